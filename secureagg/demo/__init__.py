"""The ``secureagg demo`` pipeline: data, the private + secure run, its baseline, the report.

* :class:`DemoConfig`: every knob, validated (ConfigError names the bad one), with the
  choices :data:`DATASETS` and :data:`GRAPHS`;
* :func:`prepare`: a bundled dataset, a held-out test set, label-skewed client shares;
* :func:`choose_graph`: the graph and threshold a config asks for, checked before any work;
* :func:`run_demo`: run_federated with DP and secure aggregation, then the plain baseline,
  as a :class:`DemoResult`;
* :func:`write_report`: report.md, report.json, ledger.json and PNG plots (docs/demo.md);
* :class:`LiveProgress` and :func:`summary_tables`: the terminal output (rich).

Names load on first use, so the command line reads :class:`DemoConfig` without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secureagg._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from secureagg.demo._config import (
        CLIENT_LEVEL_DEFAULTS,
        DATASETS,
        GRAPHS,
        PRIVACY_MODES,
        DemoConfig,
    )
    from secureagg.demo._console import LiveProgress, summary_tables
    from secureagg.demo._data import prepare
    from secureagg.demo._report import write_report
    from secureagg.demo._run import DemoResult, choose_graph, run_demo

_LAZY = {
    "CLIENT_LEVEL_DEFAULTS": "secureagg.demo._config",
    "PRIVACY_MODES": "secureagg.demo._config",
    "DATASETS": "secureagg.demo._config",
    "GRAPHS": "secureagg.demo._config",
    "DemoConfig": "secureagg.demo._config",
    "DemoResult": "secureagg.demo._run",
    "LiveProgress": "secureagg.demo._console",
    "choose_graph": "secureagg.demo._run",
    "prepare": "secureagg.demo._data",
    "run_demo": "secureagg.demo._run",
    "summary_tables": "secureagg.demo._console",
    "write_report": "secureagg.demo._report",
}

__all__ = [
    "CLIENT_LEVEL_DEFAULTS",
    "DATASETS",
    "GRAPHS",
    "PRIVACY_MODES",
    "DemoConfig",
    "DemoResult",
    "LiveProgress",
    "choose_graph",
    "prepare",
    "run_demo",
    "summary_tables",
    "write_report",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

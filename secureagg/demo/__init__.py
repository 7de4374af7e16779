"""The ``secureagg demo`` pipeline: data, the private + secure run, its baseline, the report.

* :class:`DemoConfig`: every knob, validated (ConfigError names the bad one);
* :func:`prepare`: a bundled dataset, a held-out test set, label-skewed client shares;
* :func:`run_demo`: run_federated with DP and secure aggregation, then the plain baseline;
* :func:`write_report`: report.md, report.json, ledger.json and PNG plots (docs/demo.md);
* :class:`LiveProgress` and :func:`summary_tables`: the terminal output (rich).

Names load on first use, so the command line reads :class:`DemoConfig` without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secureagg._lazy import lazy_exports

if TYPE_CHECKING:
    from secureagg.demo._config import DATASETS, GRAPHS, DemoConfig
    from secureagg.demo._console import LiveProgress, summary_tables
    from secureagg.demo._data import ClientData, DemoData, dirichlet_split, load_dataset, prepare
    from secureagg.demo._report import LEDGER_FILE, REPORT_FILES, render_markdown, write_report
    from secureagg.demo._run import DemoResult, GraphChoice, choose_graph, run_demo
    from secureagg.demo._summary import ACCOUNTANT, build_report

_LAZY = {
    "ACCOUNTANT": "secureagg.demo._summary",
    "DATASETS": "secureagg.demo._config",
    "GRAPHS": "secureagg.demo._config",
    "LEDGER_FILE": "secureagg.demo._report",
    "REPORT_FILES": "secureagg.demo._report",
    "ClientData": "secureagg.demo._data",
    "DemoConfig": "secureagg.demo._config",
    "DemoData": "secureagg.demo._data",
    "DemoResult": "secureagg.demo._run",
    "GraphChoice": "secureagg.demo._run",
    "LiveProgress": "secureagg.demo._console",
    "build_report": "secureagg.demo._summary",
    "choose_graph": "secureagg.demo._run",
    "dirichlet_split": "secureagg.demo._data",
    "load_dataset": "secureagg.demo._data",
    "prepare": "secureagg.demo._data",
    "render_markdown": "secureagg.demo._report",
    "run_demo": "secureagg.demo._run",
    "summary_tables": "secureagg.demo._console",
    "write_report": "secureagg.demo._report",
}

__all__ = [
    "ACCOUNTANT",
    "DATASETS",
    "GRAPHS",
    "LEDGER_FILE",
    "REPORT_FILES",
    "ClientData",
    "DemoConfig",
    "DemoData",
    "DemoResult",
    "GraphChoice",
    "LiveProgress",
    "build_report",
    "choose_graph",
    "dirichlet_split",
    "load_dataset",
    "prepare",
    "render_markdown",
    "run_demo",
    "summary_tables",
    "write_report",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

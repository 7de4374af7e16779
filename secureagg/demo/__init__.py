"""The ``secureagg demo`` pipeline: data, the private + secure run, its baseline, the report.

* :class:`DemoConfig`: every knob, validated (ConfigError names the bad one);
* :func:`prepare`: a bundled dataset, a held-out test set, label-skewed client shares;
* :func:`run_demo`: run_federated with DP and secure aggregation, then the plain baseline;
* :func:`write_report`: report.md, report.json, ledger.json and PNG plots (docs/demo.md).
"""

from secureagg.demo._config import DATASETS, GRAPHS, DemoConfig
from secureagg.demo._data import ClientData, DemoData, dirichlet_split, load_dataset, prepare
from secureagg.demo._report import LEDGER_FILE, REPORT_FILES, render_markdown, write_report
from secureagg.demo._run import DemoResult, GraphChoice, choose_graph, run_demo
from secureagg.demo._summary import ACCOUNTANT, build_report

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
    "build_report",
    "choose_graph",
    "dirichlet_split",
    "load_dataset",
    "prepare",
    "render_markdown",
    "run_demo",
    "write_report",
]

"""examples/flower_app: a valid Flower app, its README's diff is true, and it runs in Flower's
simulation engine (a simulation SuperLink started here, ``flwr run``, 3 SuperNodes, 2 rounds).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("flwr")
from _flower_engine import APP, Engine, check_results, free_ports, run_config
from flwr.cli.build import build_fab_from_disk
from flwr.common.config import validate_config

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pathspec, inside flwr's build
def test_the_app_is_a_valid_flower_app() -> None:
    config = tomllib.loads((APP / "pyproject.toml").read_text())
    ok, errors, _ = validate_config(config, check_module=True, project_dir=APP)
    assert ok, errors
    keys = config["tool"]["flwr"]["app"]["config"]
    assert keys["num-server-rounds"] >= 1 and keys["min-nodes"] >= 3
    assert {k for k in keys if k.startswith("secureagg-")} == {
        f"secureagg-{k}"
        for k in (
            "max-examples",
            "threshold",
            "degree",
            "clip",
            "frac-bits",
            "bits",
            "max-clients",
            "timeout",
        )
    }
    fab = build_fab_from_disk(APP)  # what `flwr run` sends to the SuperLink
    assert len(fab) < 50_000


def _hunks(readme: str) -> list[tuple[str, list[str], list[str]]]:
    """(file, old lines, new lines) of each hunk of the README's diff block."""
    [diff] = re.findall(r"```diff\n(.*?)```", readme, flags=re.S)
    hunks: list[tuple[str, list[str], list[str]]] = []
    path = ""
    for line in diff.splitlines():
        if line.startswith("--- "):
            continue
        if line.startswith("+++ "):
            path = line[4:].removeprefix("b/")
        elif line.startswith("@@"):
            hunks.append((path, [], []))
        else:
            tag, text = line[:1], line[1:]
            if tag in " -":
                hunks[-1][1].append(text)
            if tag in " +":
                hunks[-1][2].append(text)
    return hunks


def _contains(lines: list[str], block: list[str]) -> bool:
    return any(lines[i : i + len(block)] == block for i in range(len(lines) - len(block) + 1))


def test_the_readme_diff_is_what_the_app_changes() -> None:
    hunks = _hunks((APP / "README.md").read_text())
    assert {path for path, _, _ in hunks} == {
        "secure_app/client_app.py",
        "secure_app/server_app.py",
    }
    changed = 0
    for path, old, new in hunks:
        lines = [line.rstrip() for line in (APP / path).read_text().splitlines()]
        old = [line.rstrip() for line in old]
        new = [line.rstrip() for line in new]
        assert _contains(lines, new), f"{path}: the app does not have these lines:\n" + "\n".join(
            new
        )
        assert not _contains(lines, old), f"{path}: the app still has the plain lines"
        changed += sum(1 for line in new if line not in old)
    assert changed <= 20  # a handful of lines, not a rewrite


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_app_runs_in_the_simulation_engine(tmp_path: Path) -> None:
    engine = Engine(tmp_path)
    try:
        [port] = free_ports(1)
        engine.superlink(port, simulation=True)
        out = engine.flwr_run(
            str(APP),
            "--stream",
            "--federation-config",
            "num-supernodes=3",
            *run_config(
                num_server_rounds=2,
                results_path=str(tmp_path / "results.json"),
            ),
            timeout=240,
        )
    finally:
        engine.close()
    assert "Traceback" not in out, out[-4000:]
    assert "'secureagg-survivors': 3" in out
    # The simulation engine sets no node config beyond the partition, so each node keeps
    # its ledger in the home folder (HOME is tmp_path/home for every Flower process here).
    home = tmp_path / "home" / ".secureagg"
    check_results(tmp_path, rounds=2, ledgers=[home / f"flower-ledger-{i}.json" for i in range(3)])


def test_the_app_declares_every_package_it_imports() -> None:
    """Copied out of this repository, ``pip install -e .`` in the app's folder must bring all
    it imports (the ServerApp imports scikit-learn) and the ``secureagg audit`` its README runs."""
    import ast
    import sys
    from importlib.metadata import packages_distributions

    from packaging.requirements import Requirement

    config = tomllib.loads((APP / "pyproject.toml").read_text())
    declared = {
        (r := Requirement(d)).name.lower().replace("_", "-"): r
        for d in config["project"]["dependencies"]
    }
    imported: set[str] = set()
    for path in (APP / "secure_app").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "secure_app"}
    assert {"sklearn", "torch", "flwr", "secureagg"} <= third_party  # the check sees them
    dists = packages_distributions()
    for module in sorted(third_party):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        assert names & set(declared), f"{module} ({names}) is not in the app's dependencies"
    assert {"cli", "flower"} <= declared["secureagg"].extras  # `secureagg audit` needs cli

"""examples/plain_pytorch_loop.py runs, private and plain, and marks what secureagg adds."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plain_pytorch_loop.py"


def _run(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return out.stdout


def test_example_runs_private_and_secure() -> None:
    lines = _run("--rounds", "2", "--clients", "3").strip().splitlines()
    assert len(lines) == 2
    eps = []
    for i, line in enumerate(lines, start=1):
        m = re.fullmatch(
            rf"round {i}/2: accuracy ([0-9.]+), epsilon ([0-9.]+), error <= ([0-9.e+-]+)", line
        )
        assert m, line
        assert 0.0 <= float(m.group(1)) <= 1.0
        assert float(m.group(3)) < 1e-3
        eps.append(float(m.group(2)))
    assert 0 < eps[0] < eps[1]  # the accountant keeps counting across rounds


def test_example_plain_mode_runs() -> None:
    lines = _run("--rounds", "1", "--clients", "3", "--plain").strip().splitlines()
    assert re.fullmatch(r"round 1/1: accuracy [0-9.]+", lines[-1])


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    [fn] = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return fn


def _simple_statements(fn: ast.FunctionDef) -> list[ast.stmt]:
    compound = (ast.For, ast.With, ast.If, ast.While, ast.Try, ast.FunctionDef)
    body = fn.body[1:]  # without the docstring
    return [
        n
        for top in body
        for n in ast.walk(top)
        if isinstance(n, ast.stmt) and not isinstance(n, compound)
    ]


def test_secureagg_changes_only_the_marked_lines_of_the_classic_loop() -> None:
    source = EXAMPLE.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    assert "# fmt:" not in source and "continue" not in source
    classic = _function(tree, "federated_plain")
    ours = _function(tree, "federated_private_secure")
    secureagg_names = {
        "PrivateTrainer",
        "SecureAggregator",
        "SecureAggClient",
        "SecureAggServer",
        "PrivacyLedger",
        "UPDATE_CLIP",
        "exchange",
    }
    used = {n.id for n in ast.walk(classic) if isinstance(n, ast.Name)}
    assert not used & secureagg_names  # the classic loop is plain PyTorch
    classic_code = {ast.unparse(n) for n in _simple_statements(classic)}
    marked = 0
    for node in _simple_statements(ours):
        span = lines[node.lineno - 1 : node.end_lineno]
        if any("# secureagg" in line for line in span):
            marked += 1
        else:  # every unmarked statement is the classic loop's own
            assert ast.unparse(node) in classic_code, ast.unparse(node)
    assert 8 <= marked <= 15  # a few lines, not a rewrite

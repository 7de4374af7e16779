"""Every Python file over 400 lines is listed here with the one job it does.

STYLE.md asks for small modules with one job. A file may grow past :data:`LIMIT` only by
being added to :data:`LONG_FILES` with a one-line statement of its single job, which a
reviewer can check; a file that does two jobs is split instead. An entry for a file that
is back under the limit is removed (the list stays the list of long files).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ("secureagg", "tests", "benchmarks", "examples")
LIMIT = 400

LONG_FILES: dict[str, str] = {
    # the library
    "secureagg/protocol/_server.py": (
        "the server role's sans-I/O state machine: one class per round, its stages and the "
        "checks of each client message"
    ),
    "secureagg/protocol/_client.py": (
        "the client role's sans-I/O state machine: one small state class per stage"
    ),
    "secureagg/protocol/_codec.py": (
        "the wire format of the protocol's eleven messages: their encoders and the strict decoder"
    ),
    "secureagg/privacy/accounting.py": (
        "epsilon of a step history by the four accountants, cached per canonical history"
    ),
    "secureagg/privacy/_trainer.py": (
        "PrivateTrainer: Opacus DP-SGD kept across rounds, with its budget and ledger"
    ),
    "secureagg/privacy/_ledger.py": (
        "PrivacyLedger: a client's round records, their cumulative epsilons, load and save"
    ),
    "secureagg/flower/_strategy.py": (
        "SecureAggregation: one secure round's orchestration over Flower's grid (the stages, "
        "settings, replies and round config are in their own modules)"
    ),
    "secureagg/flower/_mod.py": (
        "the Flower client mod: answer each protocol stage for a ClientApp, saving the session"
    ),
    # benchmarks
    "benchmarks/bench_vs_flower.py": (
        "the benchmark of secureagg.flower against Flower's SecAgg+ on the same messages"
    ),
    # tests: each file tests one module or one behaviour
    "tests/unit/test_flower_loopback.py": (
        "SecureAggregation and secureagg_mod driven over an in-process grid"
    ),
    "tests/unit/test_protocol_server.py": "the server state machine against bad client messages",
    "tests/unit/test_protocol_codec.py": "the wire codec: every message, strict refusals, fuzzing",
    "tests/unit/test_flower_hostile_server.py": "the Flower mod against a hostile server",
    "tests/unit/test_flower_signed.py": "signed mode over Flower",
}
"""File (from the repository root) -> its one job."""


def _lines(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f)


def _long_files() -> dict[str, int]:
    found = {}
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*.py")):
            n = _lines(path)
            if n > LIMIT:
                found[path.relative_to(ROOT).as_posix()] = n
    return found


def test_every_long_file_is_listed_with_its_one_job() -> None:
    unlisted = {f: n for f, n in _long_files().items() if f not in LONG_FILES}
    assert not unlisted, (
        f"over {LIMIT} lines and not in LONG_FILES: {unlisted}; split a file that does more "
        "than one job, or add it with its one job"
    )


def test_the_list_names_only_long_files() -> None:
    long = _long_files()
    stale = sorted(f for f in LONG_FILES if f not in long)
    assert not stale, f"no longer over {LIMIT} lines (or gone): remove from LONG_FILES: {stale}"

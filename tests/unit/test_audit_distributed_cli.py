"""``secureagg audit distributed`` and ``secureagg audit plan``: client-level distributed DP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secureagg.cli import main
from secureagg.hazmat import DDPParams
from secureagg.privacy import DistributedLedger
from secureagg.privacy.distributed import epsilon


def test_audit_of_a_distributed_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ddp.json"
    book = DistributedLedger(path)
    params = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)
    for r, members in enumerate([list(range(1, 11)), [], list(range(1, 13))]):
        book.record(r, params, members=members, colluders=1, n_min=8, sample_rate=None,
                    delta=1e-5)  # fmt: skip
    assert main(["audit", "distributed", str(path)]) == 0
    out = capsys.readouterr().out
    assert "aborted" in out and "zero-out" in out and "add/remove" not in out
    assert f"{book.epsilon():.4f}" in out
    # against the server, which sees the members: each client's unamplified figure
    server = book.server_epsilons()
    assert "Against the server" in out and f"{max(server.values()):.4f}" in out
    # an edited ledger is refused in one line
    doc = json.loads(path.read_text())
    doc["rounds"][2]["epsilon"] = 0.01
    path.write_text(json.dumps(doc))
    assert main(["audit", "distributed", str(path)]) != 0
    err = capsys.readouterr()
    assert "differs from its recomputation" in err.out + err.err


def test_plan_meets_its_target_and_refuses_too_few_bits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["audit", "plan", "-e", "4", "-d", "1e-5", "--clients", "20", "--dim", "1000",
            "-r", "10", "--clip", "0.5"]  # fmt: skip
    assert main([*argv, "--bits", "16"]) == 0
    out = capsys.readouterr().out
    gamma = float(out.split("gamma")[1].split()[1])
    var = float(out.split("(integer units)")[1].split()[1])
    got = epsilon("dgauss", clip=0.5, gamma=gamma, variance=var, n=20, dim=1024, rounds=10,
                  delta=1e-5)  # fmt: skip
    assert got == pytest.approx(4.0, rel=1e-3)  # the printed figures meet the target
    assert main([*argv, "--bits", "6"]) != 0
    err = capsys.readouterr()
    assert "bits" in err.out + err.err
    # sampled: planned with the zero-out bound, which Zhu-Wang's figure undercuts
    assert main([*argv, "--bits", "16", "-q", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "zero-out" in out and "joint convexity" in out
    gamma = float(out.split("gamma")[1].split()[1])
    var = float(out.split("(integer units)")[1].split()[1])
    kw = dict(clip=0.5, gamma=gamma, variance=var, n=20, dim=1024, rounds=10, delta=1e-5,
              sample_rate=0.2)  # fmt: skip
    assert epsilon("dgauss", **kw) == pytest.approx(4.0, rel=1e-3)  # type: ignore[arg-type]
    assert epsilon("dgauss", amplification="zhu-wang", **kw) < 3.9  # type: ignore[arg-type]


def test_the_audit_states_the_sampling_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)
    outs = {}
    for mode in ("visible", "hidden"):
        book = DistributedLedger(tmp_path / f"{mode}.json")
        for r in range(3):
            book.record(r, params, members=list(range(1, 11)), colluders=1, n_min=8,
                        sample_rate=0.1, delta=1e-5, sampling=mode)  # fmt: skip
        assert main(["audit", "distributed", str(tmp_path / f"{mode}.json")]) == 0
        outs[mode] = capsys.readouterr().out
        server = book.server_epsilons()
        assert f"{max(server.values()):.4f}" in outs[mode]
        if mode == "hidden":  # the server's figure is the amplified one
            assert max(server.values()) == pytest.approx(book.epsilon(), rel=1e-12)
    assert "visible Poisson client sampling" in outs["visible"]
    assert "sees who took part: no amplification" in outs["visible"]
    assert "hidden Poisson client sampling" in outs["hidden"]
    assert "coins are hidden from it" in outs["hidden"] and "timing" in outs["hidden"]
    argv = ["audit", "plan", "-e", "4", "-d", "1e-5", "--clients", "20", "--dim", "1000",
            "-r", "10", "--clip", "0.5", "-q", "0.2", "--sampling", "hidden",
            "--population", "20"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "hidden: Zhu-Wang" in out
    gamma = float(out.split("gamma")[1].split()[1])
    var = float(out.split("(integer units)")[1].split()[1])
    kw = dict(clip=0.5, gamma=gamma, variance=var, n=20, dim=1024, rounds=10, delta=1e-5,
              sample_rate=0.2)  # fmt: skip
    assert epsilon("dgauss", amplification="zhu-wang", **kw) == pytest.approx(4.0, rel=1e-3)  # type: ignore[arg-type]


def test_a_hidden_plan_sizes_the_modulus_for_the_whole_population(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every hidden sum holds all N shares: the bit rule is solved for N, not n_min."""
    from secureagg.privacy.distributed import plan

    argv = ["audit", "plan", "-e", "4", "-d", "1e-5", "--clients", "600", "--dim", "100000",
            "-r", "100", "-q", "0.05", "--sampling", "hidden"]  # fmt: skip
    assert main(argv) != 0  # no population: refused, not sized for 600 shares
    err = capsys.readouterr()
    assert "--population" in err.out + err.err
    assert main([*argv, "--population", "1000"]) == 0
    out = capsys.readouterr().out
    gamma = float(out.split("gamma")[1].split()[1])
    assert "n_sum" in out and "1000" in out.split("n_sum")[1].split()[1]
    kw = dict(epsilon=4.0, delta=1e-5, clip=1.0, bits=16, n_min=600, d=10**5, rounds=100,
              sample_rate=0.05, amplification="zhu-wang")  # fmt: skip
    want = plan("dgauss", n_sum=1000, **kw)  # type: ignore[arg-type]
    assert gamma == pytest.approx(want.gamma, rel=1e-5)
    assert gamma > 1.4 * plan("dgauss", **kw).gamma  # type: ignore[arg-type]  # 600 shares: 2.45e-4
    assert main([*argv, "--population", "500"]) != 0  # below --clients
    err = capsys.readouterr()
    assert "below --clients" in err.out + err.err


def test_the_audit_of_a_ledger_that_changed_sampling_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Visible rounds then a hidden one (a ledger continued by a hidden run): the ledger's
    epsilon is not claimed against the server, which saw who took part in the visible rounds
    and faces a larger figure."""
    params = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)
    path = tmp_path / "mixed.json"
    book = DistributedLedger(path)
    for r in range(1, 5):
        mode = "visible" if r < 4 else "hidden"
        book.record(r, params, members=list(range(1, 10 if mode == "visible" else 11)),
                    colluders=1, n_min=8, sample_rate=0.2, delta=1e-5,
                    sampling=mode)  # fmt: skip
    server = book.server_epsilons()
    assert max(server.values()) > book.epsilon() + 0.5  # the claim would be false
    assert main(["audit", "distributed", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps lines
    assert "against the server and whoever sees the sums" not in out
    assert "rounds 1-3: visible Poisson client sampling q = 0.2" in out
    assert "round 4: hidden Poisson client sampling q = 0.2" in out
    assert f"ε = {book.epsilon():.4f}" in out
    assert "against whoever sees only the sums and not who took part" in out
    assert "sees who took part in the visible rounds" in out
    assert f"largest ε = {max(server.values()):.4f}" in out

"""DistributedLedger: per-round records of client-level distributed DP and the composed epsilon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secureagg import LedgerError
from secureagg.hazmat import DDPParams
from secureagg.privacy import DistributedLedger
from secureagg.privacy.distributed import epsilon, epsilon_of, round_rdp

P = DDPParams("dgauss", 1000, 16, 1.0, 2e-4, (0.15 / 2e-4) ** 2)


def _record(ledger: DistributedLedger, rnd: int, members: list[int], **kw: object) -> None:
    args: dict[str, object] = dict(colluders=1, n_min=8, sample_rate=None, delta=1e-5)
    args.update(kw)
    ledger.record(rnd, P, members=members, **args)  # type: ignore[arg-type]


def test_composition_matches_the_accountant_and_aborted_rounds_are_free() -> None:
    ledger = DistributedLedger()
    for r in range(3):
        _record(ledger, r, list(range(1, 11)))  # 10 members, 1 colluder: 9 honest shares
    want = epsilon(
        "dgauss", clip=1.0, gamma=P.gamma, variance=P.variance, n=9, dim=1024, rounds=3,
        delta=1e-5,
    )  # fmt: skip
    assert ledger.epsilon() == pytest.approx(want, rel=1e-12)
    _record(ledger, 3, [])  # aborted: nothing released
    assert ledger.epsilon() == pytest.approx(want, rel=1e-12)
    last = ledger.rounds()[-1]
    assert not last.released and last.effective_std == 0.0
    first = ledger.rounds()[0]
    assert first.effective_std == pytest.approx(3 * 0.15)  # sqrt(9) honest shares
    assert first.l2_sensitivity == pytest.approx(P.l2_sensitivity * P.gamma)


def test_refuses_a_sum_below_the_floor_and_a_repeated_round() -> None:
    ledger = DistributedLedger()
    with pytest.raises(LedgerError):
        _record(ledger, 0, list(range(1, 9)))  # 8 members - 1 colluder = 7 < 8
    _record(ledger, 0, list(range(1, 10)))
    with pytest.raises(LedgerError):
        _record(ledger, 0, list(range(1, 10)))


def test_save_load_round_trip_and_tampering(tmp_path: Path) -> None:
    path = tmp_path / "ddp.json"
    ledger = DistributedLedger(path)
    _record(ledger, 0, list(range(1, 12)), sample_rate=0.1)
    _record(ledger, 1, list(range(1, 10)), sample_rate=0.1)
    back = DistributedLedger.load(path)
    assert back.rounds() == ledger.rounds() and back.epsilon() == ledger.epsilon()
    doc = json.loads(path.read_text())
    assert doc["schema"] == "secureagg.distributed-dp-ledger" and doc["rounds"][0]["mechanism"]
    for edit in (
        lambda d: d["rounds"][1].update(epsilon=d["rounds"][1]["epsilon"] / 2),
        lambda d: d["rounds"][0].update(members=[1, 2]),
        lambda d: d["rounds"][0].update(params="00"),
        lambda d: d.update(schema="secureagg.privacy-ledger"),
        lambda d: d.update(schema_version=1),  # sampled rounds under the old bound
    ):
        bad = json.loads(path.read_text())
        edit(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(LedgerError):
            DistributedLedger.load(tmp_path / "bad.json")


def test_a_version_1_ledger_without_sampling_still_loads(tmp_path: Path) -> None:
    # version 2 changed only sampled rounds' bound; a node's unsampled version-1 ledger keeps
    # its budget instead of blocking the node
    path = tmp_path / "node.json"
    ledger = DistributedLedger(path)
    _record(ledger, 0, list(range(1, 12)))
    _record(ledger, 1, list(range(1, 10)))
    doc = json.loads(path.read_text())
    doc["schema_version"] = 1
    path.write_text(json.dumps(doc))
    back = DistributedLedger.load(path)
    assert back.rounds() == ledger.rounds() and back.epsilon() == ledger.epsilon()
    doc["rounds"][1]["sample_rate"] = 0.1
    path.write_text(json.dumps(doc))
    with pytest.raises(LedgerError, match="version 1 with sampled rounds"):
        DistributedLedger.load(path)


def test_against_the_server_a_client_pays_for_its_own_rounds_without_amplification() -> None:
    # the server sees each round's members: sampling amplification hides nothing from it
    ledger = DistributedLedger()
    _record(ledger, 0, list(range(1, 11)), sample_rate=0.1)  # 9 honest shares
    _record(ledger, 1, list(range(2, 13)), sample_rate=0.1)  # 10 honest shares
    _record(ledger, 2, [], sample_rate=0.1)  # aborted: costs nobody anything
    got = ledger.server_epsilons()
    assert sorted(got) == list(range(1, 13))

    def unsampled(honest: list[int]) -> float:
        rdp = sum(
            round_rdp("dgauss", clip=1.0, gamma=P.gamma, variance=P.variance, n=n, dim=1024)
            for n in honest
        )
        return epsilon_of(rdp, 1e-5)

    assert got[1] == pytest.approx(unsampled([9]), rel=1e-12)  # round 0 only
    assert got[12] == pytest.approx(unsampled([10]), rel=1e-12)  # round 1 only
    assert got[5] == pytest.approx(unsampled([9, 10]), rel=1e-12)  # both
    # the amplified figure is below what a client in both rounds has against the server
    assert ledger.epsilon() < got[5]
    # a client in every round of an unsampled run has exactly the ledger's figure
    plain = DistributedLedger()
    for r in range(3):
        _record(plain, r, list(range(1, 11)))
    assert plain.server_epsilons()[1] == pytest.approx(plain.epsilon(), rel=1e-12)

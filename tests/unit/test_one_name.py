"""One name per concept: each concept's name for people or on the wire has one home."""

from __future__ import annotations

import pytest

from secureagg.privacy import accounting


def test_every_accountant_has_one_display_name_used_everywhere() -> None:
    from secureagg.cli import _report_audit
    from secureagg.demo import _summary
    from secureagg.privacy.audit import _statement

    assert set(accounting.ACCOUNTANT_NAMES) == set(accounting.ACCOUNTANTS)
    assert _statement._NAMES is accounting.ACCOUNTANT_NAMES
    assert _report_audit.SHORT is accounting.ACCOUNTANT_NAMES
    assert _summary.ACCOUNTANT_NAMES is accounting.ACCOUNTANT_NAMES


def test_no_object_is_exported_by_two_packages() -> None:
    """An object is exported by one package (its own public modules may carry it too, and the
    root ``secureagg`` re-exports the recipes)."""
    import importlib
    import pkgutil

    import secureagg

    homes: dict[int, set[str]] = {}
    keep: list[object] = []  # the objects stay alive, so their ids stay theirs
    for info in pkgutil.walk_packages(secureagg.__path__, "secureagg."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.name.startswith(("secureagg.cli", "secureagg.flower")):
            pytest.importorskip("click" if "cli" in info.name else "flwr")
        module = importlib.import_module(info.name)
        package = info.name if info.ispkg else info.name.rsplit(".", 1)[0]
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if isinstance(value, (int, float, str, bytes, tuple, frozenset, dict)):
                continue  # constants: equal values are not one object
            keep.append(value)
            homes.setdefault(id(value), set()).add(package)
    twice = [sorted(p) for p in homes.values() if len(p) > 1]
    assert twice == []


def test_run_round_names_one_function() -> None:
    """``fl.run_round`` is the federated round; the protocol's in-process round for a given
    config is ``simulate_configured_round``, and its old name only warns and forwards."""
    from secureagg import fl, protocol

    assert "run_round" in fl.__all__ and "run_round" not in protocol.__all__
    assert "run_round" not in dir(protocol)
    with pytest.warns(DeprecationWarning, match="simulate_configured_round"):
        old = protocol.run_round  # type: ignore[attr-defined]
    assert old is protocol.simulate_configured_round


def test_a_stage_has_one_label() -> None:
    """Flower message tags, RoundReport, run_federated's dropouts and report.json all use
    ``Stage.label`` (the labels are pinned in test_flower_records); there is no second
    naming function."""
    from secureagg.fl import _round
    from secureagg.flower import _records

    assert not hasattr(_round, "stage_name") and not hasattr(_records, "stage_name")


def test_distributed_dp_calls_its_update_bound_update_clip() -> None:
    """The L2 bound of a client's whole update is ``update_clip`` in ``DistributedDP`` as in
    ``PrivacyConfig`` and ``SecureAggregator``; ``clip=`` and ``.clip`` warn and forward."""
    import dataclasses

    from secureagg.fl import DistributedDP

    new = DistributedDP(epsilon=4.0, delta=1e-5, update_clip=0.5, rounds=3)
    assert new.update_clip == 0.5 and "clip" not in {f.name for f in dataclasses.fields(new)}
    with pytest.warns(DeprecationWarning, match="use update_clip"):
        old = DistributedDP(epsilon=4.0, delta=1e-5, clip=0.5, rounds=3)  # type: ignore[call-arg]
    assert old == new
    with pytest.warns(DeprecationWarning, match="use update_clip"):
        assert new.clip == 0.5
    assert dataclasses.replace(new, rounds=5).update_clip == 0.5
    assert DistributedDP(4.0, 1e-5, 0.5, 3) == new  # positional order unchanged

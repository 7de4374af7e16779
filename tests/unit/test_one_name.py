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

"""One name per concept: each concept's name for people or on the wire has one home."""

from __future__ import annotations

from secureagg.privacy import accounting


def test_every_accountant_has_one_display_name_used_everywhere() -> None:
    from secureagg.cli import _report_audit
    from secureagg.demo import _summary
    from secureagg.privacy.audit import _statement

    assert set(accounting.ACCOUNTANT_NAMES) == set(accounting.ACCOUNTANTS)
    assert _statement._NAMES is accounting.ACCOUNTANT_NAMES
    assert _report_audit.SHORT is accounting.ACCOUNTANT_NAMES
    assert _summary.ACCOUNTANT_NAMES is accounting.ACCOUNTANT_NAMES

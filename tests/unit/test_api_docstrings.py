"""The API reference (docs/api/, built from the docstrings) documents every parameter and
return value of what every public package exports: ``secureagg``, ``secureagg.hazmat``,
``secureagg.protocol``, ``secureagg.privacy``, ``secureagg.fl``, ``secureagg.flower`` and
``secureagg.cli``.

A public callable with parameters has a ``Parameters:`` section naming each one, and one
that returns something a ``Returns:`` section; a dataclass names its fields under
``Attributes:``. Error classes, enums and properties are left out.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("flwr")

MODULES = (
    "secureagg",
    "secureagg.hazmat",
    "secureagg.fl",
    "secureagg.privacy",
    "secureagg.protocol",
    "secureagg.flower",
    "secureagg.cli",
)


def _documented(doc: str, section: str, names: list[str]) -> list[str]:
    """What ``doc`` misses: the section, or the names not listed in it."""
    match = re.search(rf"^{section}:\n((?:[ \t]+\S.*\n?|\n)+)", doc, re.M)
    if match is None:
        return [f"no {section} section"] if names else []
    body = match.group(1)
    return [f"{section} lacks {n}" for n in names if not re.search(rf"^\s+\**{n}\b", body, re.M)]


def _callable_problems(fn: Callable[..., Any], doc: str) -> list[str]:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [p.name for p in sig.parameters.values() if p.name not in ("self", "cls")]
    names = [n for n in names if sig.parameters[n].kind not in skip]
    problems = _documented(doc, "Parameters", names)
    if sig.return_annotation not in (inspect.Signature.empty, None, "None") and not re.search(
        r"^(Returns|Yields):", doc, re.M
    ):
        problems.append("no Returns section")
    return problems


def _exported() -> Iterator[tuple[str, Any]]:
    for name in MODULES:
        module = importlib.import_module(name)
        for export in module.__all__:
            yield f"{name}.{export}", getattr(module, export)


def _problems() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for qual, obj in _exported():
        if inspect.isclass(obj):
            if issubclass(obj, (BaseException, enum.Enum)):
                continue
            doc = inspect.getdoc(obj) or ""
            if dataclasses.is_dataclass(obj):
                fields = [f.name for f in dataclasses.fields(obj) if not f.name.startswith("_")]
                found[qual] = _documented(doc, "Attributes", fields)
            else:
                found[qual] = _callable_problems(obj, doc)
            for member, value in vars(obj).items():
                if member.startswith("_") or isinstance(value, property):
                    continue
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if callable(value):
                    doc = inspect.getdoc(value) or ""
                    found[f"{qual}.{member}"] = _callable_problems(value, doc)
        elif callable(obj):
            found[qual] = _callable_problems(obj, inspect.getdoc(obj) or "")
    return {k: v for k, v in found.items() if v}


def test_every_exported_callable_documents_its_parameters_and_return() -> None:
    assert _problems() == {}


def test_the_check_sees_a_missing_parameter() -> None:
    def f(a: int, b: int) -> int:
        """Add.

        Parameters:
            a: One.

        Returns:
            The sum.
        """
        return a + b

    assert _callable_problems(f, inspect.getdoc(f) or "") == ["Parameters lacks b"]
    assert _callable_problems(f, "Add.") == ["no Parameters section", "no Returns section"]

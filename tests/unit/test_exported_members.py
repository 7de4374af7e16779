"""The public surface is exactly what is exported, and every export is documented.

After httpx's ``tests/test_exported_members.py``: a package offers no public name (in
``dir(package)``, lazy ones included) beyond its ``__all__``, and every ``__all__`` name
resolves. And every name in the ``__all__`` of a public module (a module path with no
``_`` part) is documented: it appears in code (an inline span or a fenced block) in
README.md or docs/, or in the module's docstring (the API pages under docs/api render the
docstrings).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import types
from pathlib import Path

import pytest

import secureagg

ROOT = Path(__file__).resolve().parents[2]

# Names every package module has that are not API: the __future__ import and typing's flag.
NOT_API = {"annotations", "TYPE_CHECKING"}


def _public_modules() -> list[str]:
    names = ["secureagg"]
    for info in pkgutil.walk_packages(secureagg.__path__, "secureagg."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def _import(name: str) -> types.ModuleType:
    if name.startswith("secureagg.flower"):
        pytest.importorskip("flwr")
    return importlib.import_module(name)


PUBLIC = _public_modules()


def _code(markdown: str) -> str:
    """The code in ``markdown``: fenced blocks and inline spans."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.M | re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", prose))


def _documentation() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(_code(p.read_text(encoding="utf-8")) for p in pages)


DOCS = _documentation()


def _documented(name: str, code: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", code) is not None


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_each_name_once_and_each_resolves(name: str) -> None:
    module = _import(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported))
    for member in exported:
        assert getattr(module, member) is not None


@pytest.mark.parametrize("name", PUBLIC)
def test_a_package_offers_nothing_public_beyond_its_all(name: str) -> None:
    module = _import(name)
    if not hasattr(module, "__path__"):
        pytest.skip("a plain module: its imports are not checked")
    offered = {
        member
        for member in dir(module)
        if not member.startswith("_")
        and member not in NOT_API
        and not isinstance(getattr(module, member), types.ModuleType)
        and getattr(getattr(module, member), "__module__", None) != "typing"
    }
    assert offered - set(module.__all__) == set()  # (each __all__ name resolves: see above)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_export_is_documented(name: str) -> None:
    module = _import(name)
    text = DOCS + "\n" + _code(module.__doc__ or "")
    undocumented = {m for m in module.__all__ if m != "__version__" and not _documented(m, text)}
    assert undocumented == set(), f"document these in README.md, docs/ or {name}'s docstring"

"""The package's public surface: exported names, version, and the error tree."""

from __future__ import annotations

import secureagg
from secureagg import _exceptions as exc


def test_version_is_a_release_string() -> None:
    parts = secureagg.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_every_error_derives_from_secureagg_error() -> None:
    for name in exc.__all__:
        cls = getattr(exc, name)
        assert issubclass(cls, exc.SecureAggError), name


def test_error_tree_shape() -> None:
    assert issubclass(exc.ConfigError, ValueError)
    assert issubclass(exc.InvalidKeyError, exc.CryptoError)
    assert issubclass(exc.AuthenticationError, exc.CryptoError)
    assert issubclass(exc.RoundAborted, exc.ProtocolError)
    assert not issubclass(exc.DecodeError, ValueError)


def test_exported_names_resolve() -> None:
    for name in secureagg.__all__:
        assert getattr(secureagg, name) is not None, name

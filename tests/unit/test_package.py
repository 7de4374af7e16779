"""The package's public surface: exported names, version, lazy recipes, the error tree."""

from __future__ import annotations

import subprocess
import sys

import secureagg
from secureagg import _exceptions as exc

EXPORTS = {
    "AuthenticationError",
    "BudgetExhaustedError",
    "ConfigError",
    "CryptoError",
    "DecodeError",
    "FederatedResult",
    "InvalidKeyError",
    "LedgerError",
    "LocalUpdate",
    "PrivacyConfig",
    "PrivacyLedger",
    "PrivateTrainer",
    "ProtocolError",
    "RoundAborted",
    "RoundMetrics",
    "SecureAggClient",
    "SecureAggConfig",
    "SecureAggError",
    "SecureAggServer",
    "SecureAggregator",
    "ShareError",
    "UpdateEncoder",
    "__version__",
    "run_federated",
}


def test_all_is_pinned() -> None:
    assert set(secureagg.__all__) == EXPORTS


def test_version_is_a_release_string() -> None:
    parts = secureagg.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_every_export_resolves_to_the_layer_object() -> None:
    import secureagg.fl
    import secureagg.privacy

    for name in secureagg.__all__:
        value = getattr(secureagg, name)
        for layer in (secureagg.fl, secureagg.privacy):
            if hasattr(layer, name):
                assert value is getattr(layer, name), name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        secureagg.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_protocol_layer_does_not_import_torch() -> None:
    code = "import sys, secureagg.protocol, secureagg.hazmat; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_flower_protocol_stages_do_not_import_torch() -> None:
    # In Flower's deployment engine every protocol-stage message starts a fresh ClientApp
    # process: the mod, the strategy, UpdateEncoder and PrivacyConfig must load without torch.
    code = (
        "import sys\n"
        "from secureagg.flower import secureagg_mod, SecureAggregation\n"
        "from secureagg.fl import UpdateEncoder\n"
        "from secureagg import PrivacyConfig, LocalUpdate\n"
        "print('torch' in sys.modules, 'opacus' in sys.modules)\n"
        "from secureagg.flower import train_privately\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]


def test_flower_package_without_flower_says_which_extra_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['flwr'] = None  # as if Flower were not installed\n"
        "try:\n"
        "    import secureagg.flower\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'secureagg[flower]'" in out.stdout


def test_subpackage_exports_resolve() -> None:
    import secureagg.fl
    import secureagg.privacy

    for pkg in (secureagg.fl, secureagg.privacy):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, (pkg.__name__, name)


def test_every_error_derives_from_secureagg_error() -> None:
    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.SecureAggError), name


def test_error_tree_shape() -> None:
    assert issubclass(exc.ConfigError, ValueError)
    assert issubclass(exc.InvalidKeyError, exc.CryptoError)
    assert issubclass(exc.AuthenticationError, exc.CryptoError)
    assert issubclass(exc.RoundAborted, exc.ProtocolError)
    assert not issubclass(exc.DecodeError, ValueError)

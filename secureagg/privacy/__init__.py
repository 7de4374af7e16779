"""Differential privacy: accountants, the privacy ledger, and the private trainer.

* :class:`PrivacyConfig`, :class:`PrivateTrainer`: Opacus DP-SGD that keeps its accountant
  across rounds; :class:`LocalUpdate` is what a round returns;
* :func:`train_local` (one round of local steps, then the update clipped),
  :func:`round_batches` (a round's batches), :func:`load_global_state` (the global model
  into a possibly wrapped local one): the training loop, shared with the plain baseline;
* :data:`GRAD_SAMPLE_MODES`, :func:`choose_mode`: Opacus' per-example gradient modes;
* :func:`parameters_of`, :func:`flatten`, :func:`unflatten`: a model's trainable tensors as
  one vector and back;
* :class:`PrivacyLedger`, :class:`RoundRecord`, :class:`Step`: the per-client record of
  every round's steps (:mod:`secureagg.privacy.accounting` has the accountants).

Names load on first use, so ``PrivacyConfig`` or ``LocalUpdate`` do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from secureagg._lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from secureagg.privacy._distributed_ledger import DistributedLedger, DistributedRound
    from secureagg.privacy._ledger import PrivacyLedger
    from secureagg.privacy._local import load_global_state, round_batches, train_local
    from secureagg.privacy._modes import GRAD_SAMPLE_MODES, choose_mode
    from secureagg.privacy._privacy_config import PrivacyConfig
    from secureagg.privacy._round_record import RoundRecord
    from secureagg.privacy._tensors import flatten, parameters_of, unflatten
    from secureagg.privacy._trainer import PrivateTrainer
    from secureagg.privacy._update import LocalUpdate
    from secureagg.privacy.accounting import Step

_LAZY = {
    "DistributedLedger": "secureagg.privacy._distributed_ledger",
    "DistributedRound": "secureagg.privacy._distributed_ledger",
    "GRAD_SAMPLE_MODES": "secureagg.privacy._modes",
    "LocalUpdate": "secureagg.privacy._update",
    "PrivacyConfig": "secureagg.privacy._privacy_config",
    "PrivacyLedger": "secureagg.privacy._ledger",
    "PrivateTrainer": "secureagg.privacy._trainer",
    "RoundRecord": "secureagg.privacy._round_record",
    "Step": "secureagg.privacy.accounting",
    "choose_mode": "secureagg.privacy._modes",
    "flatten": "secureagg.privacy._tensors",
    "load_global_state": "secureagg.privacy._local",
    "parameters_of": "secureagg.privacy._tensors",
    "round_batches": "secureagg.privacy._local",
    "train_local": "secureagg.privacy._local",
    "unflatten": "secureagg.privacy._tensors",
}

__all__ = [
    "GRAD_SAMPLE_MODES",
    "DistributedLedger",
    "DistributedRound",
    "LocalUpdate",
    "PrivacyConfig",
    "PrivacyLedger",
    "PrivateTrainer",
    "RoundRecord",
    "Step",
    "choose_mode",
    "flatten",
    "load_global_state",
    "parameters_of",
    "round_batches",
    "train_local",
    "unflatten",
]


__getattr__, __dir__ = _lazy_exports(__name__, _LAZY)

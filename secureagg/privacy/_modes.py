"""Pick Opacus's per-sample-gradient mode for a model: the fastest one that is correct."""

from __future__ import annotations

from torch import nn

from secureagg._exceptions import ConfigError

__all__ = ["GRAD_SAMPLE_MODES", "choose_mode"]

GRAD_SAMPLE_MODES: tuple[str, ...] = ("auto", "ghost", "hooks", "functorch")
"""Accepted values of ``grad_sample_mode``; "auto" resolves to one of the others."""

GHOST_SHARE = 0.5
"""auto picks "ghost" when at least this share of trainable parameters is ghost-normable."""


def _ghost_types() -> tuple[type[nn.Module], ...]:
    from opacus.grad_sample import GradSampleHooksFastGradientClipping

    return tuple(GradSampleHooksFastGradientClipping.NORM_SAMPLERS)


def _has_tied_parameters(model: nn.Module) -> bool:
    every = [id(p) for _, p in model.named_parameters(remove_duplicate=False)]
    return len(every) != len(set(every))


def choose_mode(model: nn.Module, requested: str = "auto") -> str:
    """Resolve ``requested`` for ``model`` without running it.

    A guess by layer type: :class:`PrivateTrainer` measures instead ("auto" times both modes
    on the model, see ``secureagg.privacy._probe``) and falls back to this guess only when
    neither mode runs in the probe.

    Ghost clipping (Opacus's fast gradient clipping) computes the per-example gradient
    norms of Linear and Embedding layers without materialising per-example gradients, at
    the price of a second backward pass; every other layer falls back to its per-example
    gradient sampler. So "auto" picks "ghost" when most trainable parameters sit in
    ghost-normable layers (MLPs, embeddings, transformer blocks) and "hooks" otherwise
    (convolutional models), and never "ghost" for a model with tied parameters, which
    ghost clipping rejects. See docs/privacy.md for the measurements behind this rule.

    Parameters:
        model: The model to train.
        requested: "auto", or a mode to check.

    Returns:
        The mode Opacus gets.

    Raises:
        ConfigError: An unknown mode.
    """
    if requested not in GRAD_SAMPLE_MODES:
        raise ConfigError(f"grad_sample_mode must be one of {GRAD_SAMPLE_MODES}, got {requested!r}")
    if requested != "auto":
        return requested
    if _has_tied_parameters(model):
        return "hooks"
    ghost = _ghost_types()
    normable = total = 0
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
        total += own
        if type(module) in ghost:
            normable += own
    if total == 0:
        raise ConfigError("the model has no trainable parameters")
    return "ghost" if normable >= GHOST_SHARE * total else "hooks"

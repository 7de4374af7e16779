"""SecureAggConfig: how client updates are encoded and securely summed."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SecureAggConfig"]


@dataclass(frozen=True)
class SecureAggConfig:
    """Encoding and protocol settings of the secure aggregator.

    Attributes:
        frac_bits: Fixed-point precision (error per client and coordinate < 2^-frac_bits).
        clip: Bound on each coordinate of a weighted update (used unless the clients L2-clip
            their updates with ``update_clip``, which then serves as the bound).
        degree: Neighbours per client (None: the complete graph).
        threshold: Shamir threshold (None: a strict majority of each neighbourhood,
            ``default_threshold``).
        signed: Run the protocol's signed mode.
        weighting: The averaging rule (``secureagg.fl.WEIGHTINGS``): "uniform" (the default;
            no private count reaches the server) or "examples-public" (weights
            ``n / max_examples``: the server decodes the summed counts, so declare them
            public).
        allow_minority_threshold: The protocol's opt-out for simulations that study a
            threshold at or below half a neighbourhood (clients refuse one without it).
        server_graph_seed: The protocol's opt-out of the graph-seed commit-reveal (Harary
            graphs only): the server picks the seed, which lets it grind seeds until its
            colluders surround a client. Only for rounds so large that the commit-reveal's
            O(n) bytes per client matter; clients refuse it unless they allow it.
    """

    frac_bits: int = 16
    clip: float = 1.0
    degree: int | None = None
    threshold: int | None = None
    signed: bool = False
    weighting: str = "uniform"
    allow_minority_threshold: bool = False
    server_graph_seed: bool = False

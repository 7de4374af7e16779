"""Encode a weighted update into Z_{2^b} and decode a sum back into a weighted average.

A client with update x sends ``quantize([w * x, w * c])`` with ``c`` the quantisation clip
and its weight ``w`` set by the federation's weighting rule (:data:`WEIGHTINGS`):

* ``"uniform"`` (the default): ``w = 1``. The weight depends on no private count, so the
  server learns the sum of the updates and the number of clients in it, nothing else.
* ``"examples-public"``: ``w = n / max_examples``, n the client's example count. The server
  decodes the sum of the counts exactly: use it only when the counts are public (then the
  DP guarantee holds for replace-one neighbours only, not add/remove; docs/privacy.md).
* ``"examples-dp"``: ``w = n / max_examples`` with n the count the client's trainer released
  with Gaussian noise (``PrivacyConfig.count_noise``, charged in its ledger), clamped to
  ``[1, max_examples]`` (post-processing).

Decoding divides the summed weighted update by the summed weight. See docs/privacy.md for
the error bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from secureagg._exceptions import ConfigError
from secureagg.hazmat import QuantConfig, centered_sum, element_dtype, make_config, quantize
from secureagg.privacy import LocalUpdate

__all__ = ["WEIGHTINGS", "Decoded", "UpdateEncoder", "check_weighting", "plain_average"]

WEIGHTINGS: tuple[str, ...] = ("uniform", "examples-public", "examples-dp")
"""Weighting rules: every client alike, by an example count declared public, or by a count
released with DP noise."""


def check_weighting(weighting: object) -> str:
    """``weighting`` if it names a rule in WEIGHTINGS, else ConfigError."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    assert isinstance(weighting, str)
    return weighting


_F32_SLACK = 2.0**-22
"""Relative slack for float32 inputs that sit a rounding step above the clip."""


@dataclass(frozen=True)
class Decoded:
    """A decoded sum: the weighted average update, the summed weight, and the error bound.

    Attributes:
        average: The average update, flat (float64).
        total_examples: The summed weight in its unit: clients under uniform weighting,
            examples under "examples-public".
        error_bound: Per-coordinate bound of the decoding error.
    """

    average: npt.NDArray[np.float64]
    total_examples: float
    error_bound: float


class UpdateEncoder:
    """The encoding every client and the server agree on for one federation.

    The client side of secure aggregation: :meth:`encode` turns a client's update into its
    protocol input. The server's :class:`SecureAggregator` builds one from the federation's
    public settings; :meth:`SecureAggregator.client_encoder` hands it to the clients.

    Parameters:
        d: Length of a flat update.
        max_clients: Public bound on the clients in one round.
        max_examples: Public bound on one client's example count.
        clip: Bound on each coordinate of a weighted update (larger values are clipped).
        frac_bits: Fixed-point precision, in bits after the binary point.
        bits: Bit width b of the ring (default: the smallest that no sum can wrap).
        weighting: The averaging rule: "uniform" or "examples-public".

    Raises:
        ConfigError: Settings that cannot work together.
    """

    def __init__(
        self,
        d: int,
        *,
        max_clients: int,
        max_examples: int,
        clip: float,
        frac_bits: int,
        bits: int | None = None,
        weighting: str = "uniform",
    ):
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ConfigError(f"d must be a positive int, got {d!r}")
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 1:
            raise ConfigError(f"max_examples must be a positive int, got {max_examples!r}")
        self.d = d
        self.max_examples = max_examples
        self.weighting = check_weighting(weighting)
        self.quant: QuantConfig = make_config(max_clients, clip, frac_bits, bits)

    @property
    def bits(self) -> int:
        """Bit width b of the summed vectors."""
        return self.quant.bits

    @property
    def length(self) -> int:
        """Length of an encoded vector: the d update coordinates plus the weight."""
        return self.d + 1

    def public_settings(self) -> dict[str, int | float | str]:
        """The settings a client's message depends on (bits and length aside).

        Returns:
            Name -> value, for the round config's ``encoding``: bound into its digest, and what
            a client pins and checks.
        """
        return {
            "max-clients": self.quant.max_clients,
            "max-examples": self.max_examples,
            "clip": float(self.quant.clip),
            "frac-bits": self.quant.frac_bits,
            "weighting": self.weighting,
        }

    def weight(self, update: LocalUpdate) -> float:
        """The weight this client's update is encoded with (1 under uniform weighting).

        Parameters:
            update: The client's round update.

        Returns:
            The weight.
        """
        return self._weight(update)

    def _weight(self, update: LocalUpdate) -> float:
        """The client's weight (1, or ``n / max_examples``) after checking the update."""
        x = update.vector
        if not isinstance(x, np.ndarray) or x.ndim != 1 or x.shape[0] != self.d:
            got = getattr(x, "shape", None)
            raise ConfigError(
                f"update has shape {got}, the server's model has {self.d} parameters: "
                "server and client models differ"
            )
        if self.weighting == "uniform":
            return 1.0  # the count is not read: nothing of it reaches the server
        n = update.num_examples
        if self.weighting == "examples-dp" and isinstance(n, int) and not isinstance(n, bool):
            n = min(max(n, 1), self.max_examples)  # a noisy count: clamping is post-processing
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= self.max_examples:
            raise ConfigError(f"num_examples must be in 1..{self.max_examples}, got {n!r}")
        return n / self.max_examples

    def weighted(self, update: LocalUpdate) -> npt.NDArray[np.float64]:
        """The float vector a client encodes: ``[w * x, w * c]``.

        Parameters:
            update: The client's round update.

        Returns:
            The weighted update followed by the weight coordinate, in float64.
        """
        w = self._weight(update)
        out = np.empty(self.length, dtype=np.float64)
        np.multiply(update.vector, w, out=out[: self.d])
        out[self.d] = w * self.quant.clip
        return out

    def clipped_coordinates(self, update: LocalUpdate) -> int:
        """How many weighted coordinates the quantiser would clip (0 keeps the bound valid).

        Parameters:
            update: The client's round update.

        Returns:
            The number of coordinates outside [-clip, clip].
        """
        v = self.weighted(update)[: self.d]
        return int(np.count_nonzero(np.abs(v) > self.quant.clip * (1 + _F32_SLACK)))

    def encode(
        self,
        update: LocalUpdate,
        rng: np.random.Generator | None = None,
        *,
        out: npt.NDArray[Any] | None = None,
    ) -> npt.NDArray[Any]:
        """The client's protocol input: quantised ``[w * x, w * c]`` in Z_{2^b}.

        Parameters:
            update: The client's round update.
            rng: Drives the stochastic rounding (default: a fresh generator seeded by the OS).
            out: Where to write it (``length`` contiguous words of the ring's dtype; default
                a new array). A float32 update may lie in its first d words (viewed as
                float32, when the words are 32 bits): it is quantised in place and lost.

        Returns:
            The protocol input, ``length`` unsigned integers (``out`` when given).
        """
        rng = rng or np.random.default_rng()
        dtype = element_dtype(self.quant.bits)
        if out is None:
            out = np.empty(self.length, dtype=dtype)
        elif (
            not isinstance(out, np.ndarray)
            or out.shape != (self.length,)
            or out.dtype != dtype
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise ConfigError(f"out must be a writeable contiguous {dtype} array of {self.length}")
        if not isinstance(update.vector, np.ndarray) or update.vector.dtype != np.float32:
            return quantize(self.weighted(update), self.quant, rng, out=out)
        # float32 fast path: w * x in float32 (half the quantiser's memory traffic; rounding
        # of at most c * 2^-24 per coordinate, inside the decode bound's slack); the weight
        # coordinate in float64, so the summed weight keeps its 2^-f resolution.
        w = self._weight(update)
        x = update.vector if w == 1.0 else np.multiply(update.vector, np.float32(w))
        quantize(x, self.quant, rng, out=out[: self.d])
        quantize(np.array([w * self.quant.clip]), self.quant, rng, out=out[self.d :])
        return out

    def decode(self, total: npt.NDArray[Any], members: int) -> Decoded:
        """Weighted average from the sum of ``members`` encoded updates, with its error bound.

        With S the summed weighted update and W the summed weight as decoded, each off by at
        most e_s = m * 2^-f (and e_w = e_s / c for the weight), the true average differs
        from S / W by at most (|S / W| * e_w + e_s) / (W - e_w) per coordinate.

        Parameters:
            total: The unmasked sum of the members' protocol inputs.
            members: How many inputs are in the sum (m).

        Returns:
            The average, the summed weight and the error bound.
        """
        if members < 1:
            raise ConfigError("no client update to decode")
        q = centered_sum(total, self.quant)  # the sum times 2^f, as exact integers
        if q.shape != (self.length,):
            raise ConfigError(f"sum has shape {q.shape}, expected ({self.length},)")
        c, scale = self.quant.clip, self.quant.scale
        w = float(q[self.d]) / scale / c
        ulp = math.ldexp(1.0, -self.quant.frac_bits)
        e_s = members * (ulp + c * _F32_SLACK)
        e_w = e_s / c
        if w <= e_w:
            raise ConfigError("the summed weight is lost in quantisation error; raise frac_bits")
        body = q[: self.d]
        factor = 1.0 / (scale * w)
        avg = np.multiply(body, factor, dtype=np.float64)  # one pass: (q / 2^f) / w
        top = max(int(body.max()), -int(body.min())) * factor if self.d else 0.0
        bound = (top * e_w + e_s) / (w - e_w)
        bound = bound * (1 + 1e-9) + 1e-15  # float64 rounding of the divisions
        unit = 1 if self.weighting == "uniform" else self.max_examples
        return Decoded(avg, w * unit, bound)


def plain_average(
    updates: Sequence[LocalUpdate], weighting: str = "uniform", max_examples: int | None = None
) -> npt.NDArray[np.float64]:
    """The insecure reference in float64.

    Parameters:
        updates: The updates to average.
        weighting: "uniform" (the mean of the updates), or "examples-public" /
            "examples-dp" (sum(n_u * x_u) / sum(n_u)).
        max_examples: Under "examples-dp", counts are clamped to [1, max_examples], as the
            encoder does.

    Returns:
        The average, flat.
    """
    check_weighting(weighting)
    if not updates:
        raise ConfigError("no client update to average")
    total = np.zeros(updates[0].vector.shape[0], dtype=np.float64)
    weight = 0
    for u in updates:
        if u.vector.shape != total.shape:
            raise ConfigError("client updates differ in length: their models differ")
        n = 1 if weighting == "uniform" else u.num_examples
        if weighting == "examples-dp" and max_examples is not None:
            n = min(max(n, 1), max_examples)
        total += n * u.vector.astype(np.float64)
        weight += n
    out: npt.NDArray[np.float64] = total / weight
    return out

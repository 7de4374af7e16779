"""Accounting for client-level distributed DP: the sum of n clients' discrete noise shares.

Privacy unit: one client's whole update (client-level DP), zero-out neighbours (the client's
update replaced by zero; its participation and noise share unchanged: the per-round bounds
below hold the n shares' noise equal on both sides, so they do not bound add/remove, where
the client's share leaves with it), L2 sensitivity the clip c. Released: the sum that
secure aggregation outputs (rounded, rotated, noisy, mod 2^b), to anyone who sees only it —
the server and fewer than the threshold's worth of colluding clients, when at least ``n``
honest clients' noise is in it.

Per round (RDP of order alpha, all in the integer domain after scaling by 1/gamma, with
Delta_2 = :func:`~secureagg.hazmat.rounded_l2_bound` (c / gamma, D, beta) and
Delta_1 = min(Delta_2^2, sqrt(D) Delta_2)):

* distributed discrete Gaussian (Kairouz, Liu, Steinke 2021, Theorem 1 and Proposition 14):
  with n shares of N_Z(0, s), tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 s k / (k + 1)) and
  l_p = Delta_p / sqrt(n s), eps(alpha) = min(alpha l_2^2 / 2 + tau D,
  alpha (l_2^2 + 2 l_1 tau + tau^2 D) / 2, alpha (l_2 + tau sqrt(D))^2 / 2);
* Skellam (Agarwal, Kairouz, Liu 2021, Theorem 3.5) with total variance V = n s:
  eps(alpha) = alpha Delta_2^2 / (2 V) + min(((2 alpha - 1) Delta_2^2 + 6 Delta_1) / (4 V^2),
  3 Delta_1 / (2 V)).

Rounds compose by adding RDP. Visible Poisson sampling of clients with rate q: a client not sampled
adds neither its update nor its share, so the zero-out pair is (1 - q) Q0 + q P1 vs
(1 - q) Q0 + q Q1 (P1, Q1 the equal-noise pair above), not the add/remove pair
(1 - q) Q + q P vs Q of Zhu and Wang (2019, Theorem 5). Joint convexity of
sum p^alpha q^(1 - alpha) (alpha > 1) bounds it: eps'(alpha) <= log(1 - q + q
exp((alpha - 1) eps(alpha))) / (alpha - 1) (:func:`zero_out_sampled_rdp`, the default).
That is visible sampling's pair. Under hidden sampling (:data:`SAMPLINGS`) every client
adds its share in every round and its secret coin decides only whether its update goes in:
the pair is (1 - q) P + q P' vs P, for which Zhu-Wang's bound (:func:`subsampled_rdp`,
``amplification="zhu-wang"``, also the DDG and Skellam papers' published accounting) is
proved; :func:`amplification_for` maps each mode to its bound (one of
:data:`AMPLIFICATIONS`). Use a sample rate only when each
client is sampled by its own unbiased coin that the server cannot influence, otherwise pass
``sample_rate=None`` (no amplification).
Under visible sampling the amplified figure protects a client only from observers who do
not see who took part: the server sees each round's members, so against it what holds is
zero-out DP with the unsampled per-round RDP composed over the client's own rounds
(:meth:`~secureagg.privacy.DistributedLedger.server_epsilons`). RDP converts to
(epsilon, delta) as in dp-accounting (Canonne, Kamath, Steinke 2020; Asoodeh et al. 2020).
"""

from secureagg.privacy._ddp_accounting import (
    AMPLIFICATIONS,
    ORDERS,
    SAMPLINGS,
    amplification_for,
    ddg_rdp,
    epsilon,
    epsilon_for,
    epsilon_of,
    round_rdp,
    sampled_round_rdp,
    skellam_rdp,
    subsampled_rdp,
    tau,
    zero_out_sampled_rdp,
)
from secureagg.privacy._ddp_plan import (
    DistributedPlan,
    choose_gamma,
    local_std_for_epsilon,
    min_bits,
    plan,
)

__all__ = [
    "AMPLIFICATIONS",
    "ORDERS",
    "SAMPLINGS",
    "DistributedPlan",
    "amplification_for",
    "choose_gamma",
    "ddg_rdp",
    "epsilon",
    "epsilon_for",
    "epsilon_of",
    "local_std_for_epsilon",
    "min_bits",
    "plan",
    "round_rdp",
    "sampled_round_rdp",
    "skellam_rdp",
    "subsampled_rdp",
    "tau",
    "zero_out_sampled_rdp",
]

"""run_federated: n clients and a server in one process, R rounds, DP and secure aggregation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from secureagg._exceptions import ConfigError
from secureagg.fl._aggregator import SecureAggregator
from secureagg.fl._config import SecureAggConfig
from secureagg.fl._distributed_settings import DistributedDP
from secureagg.fl._encoding import check_weighting
from secureagg.fl._metrics import FederatedResult, RoundMetrics
from secureagg.fl._plain import PlainTrainer
from secureagg.fl._progress import OnProgress, ProgressEvent
from secureagg.fl._round import LocalTrainer, RoundOutcome, run_round
from secureagg.fl._sampling import HiddenCoin, visible_sample
from secureagg.privacy import (
    DistributedLedger,
    PrivacyConfig,
    PrivacyLedger,
    PrivateTrainer,
    load_global_state,
    parameters_of,
)
from secureagg.privacy.accounting import ADD_REMOVE, REPLACE_ONE
from secureagg.protocol import Stage

__all__ = ["run_federated"]

_STAGES = (Stage.ADVERTISE, Stage.SHARE_KEYS, Stage.MASKED_INPUT, Stage.UNMASK)
_SIGNED_STAGES = (*_STAGES[:3], Stage.CONSISTENCY, Stage.UNMASK)
# (no dropout between the graph-seed commitment and its reveal: that aborts the round)


def run_federated(
    model_fn: Callable[[], nn.Module],
    client_loaders: Mapping[int, DataLoader[Any]],
    *,
    rounds: int,
    optimizer_fn: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    local_epochs: int = 1,
    privacy: PrivacyConfig | Mapping[int, PrivacyConfig] | None,
    secure: SecureAggConfig | None,
    dropout_rate: float = 0.0,
    seed: int = 0,
    ledger: PrivacyLedger | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    on_progress: OnProgress | None = None,
    capture_client: bool = False,
    keep_vectors: bool = False,
    criterion: Callable[..., torch.Tensor] | None = None,
    server_lr: float = 1.0,
    insecure_noise_seed: int | None = None,
    weighting: str | None = None,
    distributed: DistributedDP | None = None,
    distributed_ledger: DistributedLedger | None = None,
) -> FederatedResult:
    """Federated averaging over ``client_loaders`` for ``rounds`` rounds, all in this process.

    With ``privacy`` each client trains with DP-SGD (one PrivateTrainer per client for the
    whole run); with ``secure`` the updates are summed by the secure aggregation protocol
    (simulated in this process: see :meth:`SecureAggregator.simulate`). Rounds are
    numbered from 1; a ledger that already holds rounds goes on counting after them.

    Parameters:
        model_fn: Builds a fresh model (the global model and each client's).
        client_loaders: Each client's training data, by client id.
        rounds: How many rounds.
        optimizer_fn: Builds a client's optimizer from its model's parameters.
        local_epochs: Local epochs per round.
        privacy: One DP-SGD config for all clients, or one per client id (None: no DP);
            ``target_epsilon`` is spread over ``rounds`` unless ``planned_rounds`` says
            otherwise.
        secure: Secure aggregation settings (None: plain averaging).
        dropout_rate: Probability per round that one random client drops at a random
            protocol stage.
        seed: Fixes the model's initialisation, the dropouts and the quantiser's rounding;
            it never reaches DP noise or Poisson sampling, which every client draws each
            round from generators seeded by the OS CSPRNG.
        ledger: Gets one record per client per round (created if None and ``privacy`` is
            set), saved after every round if it is bound to a path.
        evaluate: Scores the global model after each round (e.g. held-out accuracy).
        on_progress: Gets a :class:`ProgressEvent` at each step of each round.
        capture_client: Keep one masked vector per round, as the server saw it.
        keep_vectors: Keep every round's updates, recovered and reference averages.
        criterion: The training loss (default: cross-entropy).
        server_lr: Server learning rate applied to the average update.
        insecure_noise_seed: Tests only: repeatable noise; marks every trainer and ledger
            record as not private.
        weighting: The averaging rule (default: ``secure.weighting``, else "uniform").
        distributed: Client-level distributed DP (needs ``secure``, excludes ``privacy``):
            clients train without DP-SGD and their updates are clipped and noised inside
            the masked sum; with its ``sample_rate`` each client flips its own coin from
            the OS (not from ``seed``) each round: under visible sampling it joins the
            round only if sampled; under hidden sampling every client joins every round
            and one not sampled sends a zero update (it does not train); its public
            weights, if any, must then name exactly the clients.
        distributed_ledger: Gets one record per round under ``distributed`` (saved after
            every round if it is bound to a path).

    Returns:
        Every round's metrics, the final model, the ledger and the clients' trainers.

    Raises:
        ConfigError: An impossible setting.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"rounds must be a positive int, got {rounds!r}")
    if not 0.0 <= dropout_rate <= 1.0:
        raise ConfigError(f"dropout_rate must be in [0, 1], got {dropout_rate!r}")
    if not client_loaders:
        raise ConfigError("client_loaders is empty")
    if distributed_ledger is not None and distributed is None:
        raise ConfigError("distributed_ledger needs distributed=")
    if distributed is not None and (secure is None or privacy is not None):
        raise ConfigError("distributed DP needs secure aggregation and replaces privacy=")
    if distributed is not None and secure is not None and secure.weighting != "uniform":
        raise ConfigError(
            "distributed DP takes public weights from DistributedDP(weights=...): keep"
            " SecureAggConfig(weighting='uniform')"
        )
    if distributed is not None and distributed.weights is not None:
        unweighted = sorted(set(client_loaders) - set(distributed.weights))
        if unweighted:
            raise ConfigError(f"clients {unweighted} have no public weight in distributed=")
        extra = sorted(set(distributed.weights) - set(client_loaders))
        if extra and distributed.sampling == "hidden":  # the table is the population
            raise ConfigError(
                f"under hidden sampling the weight table is the population (the sum is "
                f"divided by q x its total weight): ids {extra} in distributed= weights are "
                "not clients of this run"
            )
    configs = _configs(privacy, client_loaders)
    if weighting is None:
        weighting = "uniform" if secure is None else secure.weighting
    check_weighting(weighting)
    if secure is not None and secure.weighting != weighting:
        raise ConfigError(f"weighting {weighting!r} differs from secure.weighting")
    # "examples-public" sends each client's true count: the count is declared public, so
    # the guarantee is under replace-one (same size, one example replaced; sensitivity 2C)
    relation = REPLACE_ONE if weighting == "examples-public" else ADD_REMOVE
    if (
        configs is not None
        and relation == REPLACE_ONE
        and any(c.count_noise is not None for c in configs.values())
    ):
        raise ConfigError("weighting 'examples-public' sends the true count: no count_noise")
    if weighting == "examples-dp" and (
        configs is None or any(c.count_noise is None for c in configs.values())
    ):
        raise ConfigError("weighting 'examples-dp' needs PrivacyConfig(count_noise=...)")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = model_fn()
    state = {k: v.clone() for k, v in parameters_of(model).items()}
    if configs is not None and ledger is None:
        ledger = PrivacyLedger()
    last = 0  # rounds are numbered from 1, as in Flower; a reopened ledger goes on counting
    if ledger is not None:
        last = max((r.round for c in ledger.clients() for r in ledger.records(c)), default=0)
    clients = _make_clients(
        model_fn,
        client_loaders,
        optimizer_fn,
        configs,
        rounds,
        local_epochs,
        insecure_noise_seed,
        criterion,
        ledger,
        relation,
    )
    aggregator = None
    if secure is not None:
        aggregator = SecureAggregator(
            state,
            secure,
            max_clients=len(clients),
            max_examples=max(c.num_examples for c in clients.values()),
            update_clip=_update_clip(configs),
            distributed=distributed,
        )
    history: list[RoundMetrics] = []
    if distributed is not None and distributed.sampling == "hidden":
        assert distributed.sample_rate is not None  # DistributedDP checks it
        d = sum(int(v.numel()) for v in state.values())
        hidden: dict[int, LocalTrainer] = {
            c: HiddenCoin(t, distributed.sample_rate, d) for c, t in clients.items()
        }
    for r in range(1, rounds + 1):
        if distributed is not None and distributed.sampling == "hidden":
            sampled = hidden  # every client; each flips its own secret coin as it trains
        else:
            sampled = visible_sample(clients, distributed)  # all clients unless visible sampling
        dropout = None
        if dropout_rate > 0 and rng.random() < dropout_rate and sampled:
            stages = _STAGES if secure is None or not secure.signed else _SIGNED_STAGES
            who = sorted(sampled)[int(rng.integers(len(sampled)))]  # one of this round's
            dropout = (who, stages[int(rng.integers(len(stages)))])
        out = run_round(
            sampled,
            state,
            aggregator=aggregator,
            dropout=dropout,
            rng=rng,
            capture_client=capture_client,
            on_progress=on_progress,
            round_index=r,
            rounds=rounds,
            weighting=weighting,
        )
        if out.average is not None:
            with torch.no_grad():
                for name, delta in out.average.items():
                    state[name] = state[name] + server_lr * delta.to(state[name].dtype)
        load_global_state(model, state)
        if distributed_ledger is not None and aggregator is not None:
            _record_distributed(distributed_ledger, aggregator, out)
        if ledger is not None and configs is not None:
            _record(ledger, clients, out, last + r)
        metrics = _metrics(r, clients, out, model, evaluate, aggregator, keep_vectors)
        history.append(metrics)
        if on_progress is not None:
            on_progress(ProgressEvent(r, "done", rounds, metrics=metrics))
    return FederatedResult(rounds=history, model=model, ledger=ledger, clients=clients)


def _record_distributed(
    ledger: DistributedLedger, aggregator: SecureAggregator, out: RoundOutcome
) -> None:
    dist = aggregator.distributed
    if dist is None:
        raise ConfigError("distributed_ledger needs distributed=")
    released = out.recovered is not None and not out.aborted
    ledger.record(
        1 + max((x.round for x in ledger.rounds()), default=0),  # from 1; continues a ledger
        dist.params,
        members=list(out.members) if released else [],
        colluders=dist.settings.colluders,
        n_min=dist.n_min,
        sample_rate=dist.settings.sample_rate,
        delta=dist.settings.delta,
        sampling=dist.settings.sampling,
    )


def _configs(
    privacy: PrivacyConfig | Mapping[int, PrivacyConfig] | None,
    loaders: Mapping[int, DataLoader[Any]],
) -> dict[int, PrivacyConfig] | None:
    if privacy is None:
        return None
    if isinstance(privacy, PrivacyConfig):
        return {cid: privacy for cid in loaders}
    missing = sorted(set(loaders) - set(privacy))
    if missing:
        raise ConfigError(f"no PrivacyConfig for clients {missing}")
    return {cid: privacy[cid] for cid in loaders}


def _update_clip(configs: Mapping[int, PrivacyConfig] | None) -> float | None:
    if configs is None:
        return None
    clips = {c.update_clip for c in configs.values()}
    if len(clips) > 1:
        raise ConfigError(f"clients must share one update_clip for secure aggregation: {clips}")
    return clips.pop()


def _make_clients(
    model_fn: Callable[[], nn.Module],
    loaders: Mapping[int, DataLoader[Any]],
    optimizer_fn: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    configs: Mapping[int, PrivacyConfig] | None,
    rounds: int,
    local_epochs: int,
    insecure_noise_seed: int | None,
    criterion: Callable[..., torch.Tensor] | None,
    ledger: PrivacyLedger | None,
    relation: str,
) -> dict[int, LocalTrainer]:
    clients: dict[int, LocalTrainer] = {}
    for i, cid in enumerate(sorted(loaders)):
        model = model_fn()
        opt = optimizer_fn(model.parameters())
        if configs is None:
            clients[cid] = PlainTrainer(
                model, opt, loaders[cid], local_epochs=local_epochs, criterion=criterion
            )
            continue
        config = configs[cid]
        if ledger is not None and ledger.records(cid) and ledger.relation(cid) != relation:
            raise ConfigError(
                f"client {cid}'s ledger is under {ledger.relation(cid)}; this run's weighting "
                f"makes it {relation}"
            )
        if config.target_epsilon is not None and config.planned_rounds is None:
            config = dataclasses.replace(config, planned_rounds=rounds)
        clients[cid] = PrivateTrainer.from_config(
            model,
            opt,
            loaders[cid],
            config,
            local_epochs=local_epochs,
            insecure_noise_seed=(
                None if insecure_noise_seed is None else insecure_noise_seed * 100_003 + i
            ),
            criterion=criterion,
            history=ledger.history(cid) if ledger is not None else (),
            relation=relation,
        )
    return clients


def _record(
    ledger: PrivacyLedger, clients: Mapping[int, LocalTrainer], out: RoundOutcome, rnd: int
) -> None:
    for cid, trainer in clients.items():
        assert isinstance(trainer, PrivateTrainer)
        reason = out.dropped.get(cid)
        code = None if reason is None else ("budget" if reason == "budget" else "dropout")
        trainer.record_round(ledger, cid, rnd, participated=cid in out.members, reason=code)
    if ledger.path is not None:
        ledger.save()


def _metrics(
    r: int,
    clients: Mapping[int, LocalTrainer],
    out: RoundOutcome,
    model: nn.Module,
    evaluate: Callable[[nn.Module], float] | None,
    aggregator: SecureAggregator | None,
    keep_vectors: bool,
) -> RoundMetrics:
    accuracy = None
    if evaluate is not None:
        model.eval()
        with torch.no_grad():
            accuracy = float(evaluate(model))
    eps = {c: t.epsilon() for c, t in clients.items() if isinstance(t, PrivateTrainer)}
    # hidden sampling: a norm of 0 would show a client's coin (and client_ms leaves out
    # training: run_round)
    dist = None if aggregator is None else aggregator.distributed
    hidden = dist is not None and dist.hidden
    return RoundMetrics(
        round=r,
        participants=sorted(out.trained),
        members=list(out.members),
        dropped=dict(out.dropped),
        dropouts=dict(out.dropouts),
        accuracy=accuracy,
        max_abs_error=out.max_abs_error,
        error_bound=out.error_bound,
        epsilon=eps,
        client_ms=dict(out.client_ms),
        client_bytes=dict(out.client_bytes),
        server_ms=out.server_ms,
        captured=out.captured,
        bits=None if aggregator is None else aggregator.bits,
        aborted=out.aborted,
        update_norms={} if hidden else {c: u.norm for c, u in out.trained.items()},
        grad_sample_mode={c: t.grad_sample_mode for c, t in clients.items()},
        updates=dict(out.trained) if keep_vectors else {},
        recovered=out.recovered if keep_vectors else None,
        reference=out.reference if keep_vectors else None,
    )

"""The server side: a Flower strategy wrapper that aggregates training updates securely.

This module runs a round: it samples through the wrapped strategy, opens the protocol
session, runs the key and share stages before training and the rest after it. The settings
checks, the identify stage, the round config and the grid traffic have modules of their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from secureagg._exceptions import ConfigError, RoundAborted, SecureAggError
from secureagg.fl import DistributedDP, DistributedEncoder, UpdateEncoder
from secureagg.flower._ddp_server import DistributedRounds
from secureagg.flower._exchange import (
    Round,
    end,
    exchange,
    feed,
    keys_and_shares,
    train_messages,
)
from secureagg.flower._identify import identify
from secureagg.flower._records import apply_update, model_size
from secureagg.flower._report import RoundReport
from secureagg.flower._round_config import encoding, one_train_digest, round_config
from secureagg.flower._settings import check_settings, settings_from_run_config
from secureagg.privacy import DistributedLedger
from secureagg.protocol import RoundConfig, ServerSession, Stage

__all__ = ["RoundReport", "SecureAggregation"]

log = logging.getLogger("secureagg.flower")


class SecureAggregation(Strategy):
    """Wraps a Flower strategy so that training updates are only ever summed securely.

    The wrapped strategy picks the nodes and sees one reply per round: the secure average
    of the survivors' models. Every setting that shapes a node's message is in the round
    config, which nodes check against what they pinned in their node config
    (docs/flower.md, "What a node accepts"). Evaluation passes through.

    Parameters:
        strategy: The Flower strategy to wrap (e.g. ``FedAvg``).
        max_examples: Public bound on a client's example count.
        threshold: Shamir threshold (default: a majority of each neighbourhood).
        degree: Neighbours per node (default: the complete graph).
        frac_bits: Fixed-point precision, in bits after the binary point.
        clip: Bound on each coordinate of a weighted update.
        bits: Bit width of the ring (default: the smallest that no sum can wrap).
        max_clients: Public bound on the nodes in a round (default: the nodes sampled).
        timeout: Seconds each protocol stage but training waits for replies (setup,
            share-keys, unmask); the training message waits for ``start(timeout=...)``.
        signed: Run signed rounds: each node is first asked for its Ed25519 identity key,
            and a consistency stage comes before unmasking (docs/flower.md, "Signed mode").
        weighting: "uniform" (the default: every node weighted alike, no example count
            reaches the server) or "examples-public" (weighted by ``num-examples`` capped
            at ``max_examples``; the summed counts are then revealed).
        run_config: The run config the nodes' ClientApps read (the ServerApp's
            ``context.run_config``; :meth:`from_config` passes it). Its digest is in every
            round config, and a node whose ``context.run_config`` differs declines: a
            SuperLink could otherwise give nodes different learning rates, epochs or noise.
            Default: empty, which only nodes with an empty run config accept.
        distributed: Client-level distributed DP (docs/flower.md, "Client-level distributed
            DP"): the strategy plans each node's noise share for ``threshold - colluders``
            honest nodes and binds it into every round config; nodes clip, rotate, round and
            add it inside the masked sum. Needs ``threshold``; ``frac_bits``, ``clip`` and
            ``bits`` are then not used: the plan's L2 bound (``DistributedDP.update_clip``),
            gamma and bits encode each update.
        distributed_ledger: Under ``distributed``, gets one record per decoded round.
        server_graph_seed: The opt-out of the graph-seed commit-reveal (with ``degree``):
            the server picks the Harary ring's seed, which lets it try seeds until its
            colluders surround a node. Saves the reveal stage and the O(n) bytes per node of
            the commit-reveal, for very large rounds; a node declines such a round unless its
            node config sets ``secureagg-allow-server-graph-seed``.

    Raises:
        ConfigError: Settings that cannot work together, or a strategy that is not one.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        max_examples: int,
        threshold: int | None = None,
        degree: int | None = None,
        frac_bits: int = 16,
        clip: float = 1.0,
        bits: int | None = None,
        max_clients: int | None = None,
        timeout: float | None = 120.0,
        signed: bool = False,
        weighting: str = "uniform",
        run_config: Mapping[str, Any] | None = None,
        distributed: DistributedDP | None = None,
        distributed_ledger: DistributedLedger | None = None,
        server_graph_seed: bool = False,
    ) -> None:
        self.server_graph_seed = server_graph_seed
        self.signed = signed
        self.weighting = weighting
        self.max_examples = max_examples
        self.threshold = threshold
        self.degree = degree
        self.frac_bits = frac_bits
        self.clip = clip
        self.bits = bits
        self.max_clients = max_clients
        self.timeout = timeout
        check_settings(strategy, self)
        self.clip = float(clip)
        self.strategy = strategy
        self.run_config = dict(run_config or {})
        self.reports: dict[int, RoundReport] = {}
        self._round: Round | None = None
        if distributed_ledger is not None and distributed is None:
            raise ConfigError("distributed_ledger needs distributed=")
        if distributed is not None and weighting != "uniform":
            raise ConfigError("distributed DP over Flower weights nodes uniformly")
        self.distributed = (
            None
            if distributed is None
            else DistributedRounds(distributed, threshold, distributed_ledger, max_clients)
        )

    @classmethod
    def from_config(cls, strategy: Strategy, config: Mapping[str, Any]) -> SecureAggregation:
        """Settings from a Flower run config.

        Parameters:
            strategy: The Flower strategy to wrap.
            config: The run config: ``secureagg-max-examples`` (required), and optionally
                ``secureagg-threshold``, ``-degree``, ``-bits``, ``-max-clients`` (0 means the
                default), ``-frac-bits``, ``-clip``, ``-timeout``, ``-signed``, ``-weighting``,
                ``-server-graph-seed``.

        Returns:
            The wrapped strategy.

        Raises:
            ConfigError: A missing or ill-typed setting.
        """
        return cls(strategy, **settings_from_run_config(config))

    # -- training: keys and shares in configure_train, the model with the masked-input -----
    # -- message, unmasking in aggregate_train ------------------------------------------------

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Run the key and share stages over ``grid``; then the wrapped strategy's train messages.

        Parameters:
            server_round: Flower's round number.
            arrays: The global model.
            config: The wrapped strategy's train config.
            grid: Flower's grid, over which the protocol's earlier stages run.

        Returns:
            The train messages, each with the shares for its node (none for nodes that cannot
            go on).
        """
        self._round = None
        start = time.perf_counter()
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        nodes = sorted({m.metadata.dst_node_id for m in messages})
        report = RoundReport(round=server_round, nodes=nodes)
        self.reports[server_round] = report
        rnd = self._open(server_round, arrays, grid, messages, nodes, report)
        if rnd is None:
            return []
        self._round = rnd
        try:
            deliveries, ready = keys_and_shares(rnd, server_round, self.timeout)
        except RoundAborted as exc:
            self._round = None
            end(rnd, time.perf_counter() - start - rnd.waited, aborted=str(exc))
            return []
        rnd.report.server_seconds += time.perf_counter() - start - rnd.waited
        return train_messages(rnd, messages, deliveries, ready, server_round)

    def _open(
        self,
        server_round: int,
        arrays: ArrayRecord,
        grid: Grid,
        messages: list[Message],
        nodes: list[int],
        report: RoundReport,
    ) -> Round | None:
        """The round's session over the sampled ``nodes`` (identified first in signed mode);
        None, with the reason in ``report``, if the round cannot start."""
        if len(nodes) < 3:
            _skip(report, f"secure aggregation needs at least 3 nodes, {len(nodes)} sampled")
            return None
        try:
            train = one_train_digest(messages)
        except ConfigError as exc:
            _skip(report, str(exc))
            return None
        d = model_size(arrays)
        start_identify = time.perf_counter()
        identities = self._identify(grid, nodes, server_round, report) if self.signed else {}
        identify_wait = time.perf_counter() - start_identify
        if self.signed:
            nodes = sorted(identities)
            if len(nodes) < 3:
                _skip(report, f"secure aggregation needs at least 3 nodes, {len(nodes)} identified")
                return None
        client_of = {node: i + 1 for i, node in enumerate(nodes)}
        keys = {client_of[node]: key for node, key in identities.items()}
        try:
            encoder, cfg = self._round_config(server_round, len(nodes), d, keys, train)
        except ConfigError as exc:
            # How many nodes a round samples depends on who connected: settings that do not
            # fit this many skip the round (logged), they do not stop the ServerApp.
            _skip(report, f"{exc} ({len(nodes)} nodes sampled)")
            return None
        return Round(
            session=ServerSession(cfg, transport_dedupes=True),  # one reply per message
            encoder=encoder,
            global_arrays=arrays,
            node_of={c: n for n, c in client_of.items()},
            client_of=client_of,
            grid=grid,
            report=report,
            waited=identify_wait,
        )

    def _identify(
        self, grid: Grid, nodes: list[int], server_round: int, report: RoundReport
    ) -> dict[int, bytes]:
        """Signed mode: ask every node for its identity public key; {node: key} for those
        that answer with a well-formed key no other node gave."""
        return identify(grid, nodes, server_round, report, self.timeout)

    def _round_config(
        self, server_round: int, n: int, d: int, keys: Mapping[int, bytes], train: str
    ) -> tuple[UpdateEncoder | DistributedEncoder, RoundConfig]:
        """The encoding and the round config for ``n`` nodes; ConfigError if they do not fit."""
        if self.distributed is not None:
            return self.distributed.round_config(
                server_round,
                n,
                d,
                keys,
                train,
                settings=self.encoding,
                degree=self.degree,
                signed=self.signed,
            )
        return round_config(server_round, n, d, keys, train, settings=self.encoding, of=self)

    def encoding(
        self, encoder: UpdateEncoder | DistributedEncoder
    ) -> dict[str, int | float | str | bool]:
        """What a node encodes its update with, bound into the round config (and its digest).

        A node reads these from the config alone, never from a per-node field.

        Parameters:
            encoder: The round's encoder.

        Returns:
            Setting name -> value.
        """
        return encoding(self.strategy, self.run_config, encoder)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Collect the masked updates, unmask over the grid, hand the secure average on.

        Parameters:
            server_round: Flower's round number.
            replies: The nodes' replies to the train messages.

        Returns:
            The wrapped strategy's aggregate of the secure average (``(None, None)`` when the
            round aborted).
        """
        rnd, self._round = self._round, None
        report = self.reports.get(server_round)
        if rnd is None or report is None or rnd.report is not report:
            return None, None
        start = time.perf_counter()
        rnd.waited = 0.0
        session = rnd.session
        try:
            feed(rnd, Stage.MASKED_INPUT, replies)
            while True:
                out = session.close_stage()
                stage = session.stage
                if stage is None:
                    break
                exchange(rnd, stage.label, stage, out, server_round, self.timeout)
        except RoundAborted as exc:
            end(rnd, time.perf_counter() - start - rnd.waited, aborted=str(exc))
            return None, MetricRecord({"secureagg-aborted": 1})
        result = session.result
        try:
            if isinstance(rnd.encoder, DistributedEncoder) and self.distributed is not None:
                seed = rnd.session.config.round_id  # the public rotation seed
                decoded = rnd.encoder.decode(result.total, len(result.survivors), seed)
                self.distributed.record(
                    rnd.encoder, sorted(rnd.node_of[c] for c in result.survivors)
                )
            else:
                decoded = rnd.encoder.decode(result.total, len(result.survivors))
            new = apply_update(rnd.global_arrays, decoded.average)
        except SecureAggError as exc:
            # A client can put any value in its masked input: a sum whose weight does not
            # decode (zero or negative) fails the round; it must not stop the ServerApp.
            why = f"the unmasked sum does not decode ({exc}): a client sent a bad input"
            end(rnd, time.perf_counter() - start - rnd.waited, aborted=why)
            return None, MetricRecord({"secureagg-aborted": 1})
        report.survivors = sorted(rnd.node_of[c] for c in result.survivors)
        report.total_examples = decoded.total_examples
        report.error_bound = decoded.error_bound
        # the decoded average (d float64s, used up by apply_update) is freed before the
        # wrapped strategy runs, which can then reuse its memory instead of fresh pages
        del decoded, result
        weighted_by = str(getattr(self.strategy, "weighted_by_key", "num-examples"))
        arrays_key = str(getattr(self.strategy, "arrayrecord_key", "arrays"))
        examples = max(1, round(report.total_examples))
        average = Message(
            content=RecordDict({arrays_key: new, "metrics": MetricRecord({weighted_by: examples})}),
            dst_node_id=0,
            message_type=MessageType.TRAIN,
        )
        arrays, metrics = self.strategy.aggregate_train(server_round, [average])
        end(rnd, time.perf_counter() - start - rnd.waited)
        merged = MetricRecord(dict(metrics.items()) if metrics is not None else {})
        merged["secureagg-survivors"] = len(report.survivors)
        merged["secureagg-dropped"] = len(report.nodes) - len(report.survivors)
        if isinstance(rnd.encoder, DistributedEncoder):  # noisy by design: its std instead
            merged["secureagg-noise-std"] = rnd.encoder.noise_std(len(report.survivors))
        else:
            merged["secureagg-error-bound"] = float(report.error_bound)
        log.info(
            "secureagg round %d: %d of %d nodes in the sum, error bound %.3g",
            server_round,
            len(report.survivors),
            len(report.nodes),
            report.error_bound,
        )
        return arrays, merged

    # -- everything else is the wrapped strategy's --------------------------------------------

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's evaluation messages (evaluation metrics are not secured).

        Parameters:
            server_round: Flower's round number.
            arrays: The global model.
            config: The wrapped strategy's evaluate config.
            grid: Flower's grid.

        Returns:
            The wrapped strategy's messages, unchanged.
        """
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """The wrapped strategy's evaluation aggregate.

        Parameters:
            server_round: Flower's round number.
            replies: The nodes' evaluation replies.

        Returns:
            The wrapped strategy's aggregate, unchanged.
        """
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        """Log the secure-aggregation settings, then the wrapped strategy's summary."""
        log.info(
            "SecureAggregation: max_examples=%d threshold=%s degree=%s frac_bits=%d clip=%g "
            "timeout=%s signed=%s",
            self.max_examples,
            self.threshold or "majority",
            self.degree or "complete",
            self.frac_bits,
            self.clip,
            self.timeout,
            self.signed,
        )
        self.strategy.summary()


def _skip(report: RoundReport, why: str) -> None:
    """Record and log why round ``report.round`` does not start."""
    report.aborted = why
    log.error("secureagg round %d skipped: %s", report.round, why)

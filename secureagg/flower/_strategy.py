"""The server side: a Flower strategy wrapper that aggregates training updates securely."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.app.typing import ConfigRecordValues
from flwr.serverapp import Grid
from flwr.serverapp import strategy as strategies
from flwr.serverapp.strategy import Strategy

from secureagg._exceptions import ConfigError, RoundAborted, SecureAggError
from secureagg.fl import UpdateEncoder
from secureagg.flower._records import (
    IDENTIFY,
    RECORD_KEY,
    SETUP,
    apply_update,
    model_size,
    payload,
    record_of,
    run_config_digest,
    stage_name,
    train_digest,
)
from secureagg.protocol import (
    RoundConfig,
    ServerSession,
    Stage,
    new_round_id,
    plan_round,
)

__all__ = ["RoundReport", "SecureAggregation"]

log = logging.getLogger("secureagg.flower")

_NEEDS_EACH_UPDATE: tuple[type[Strategy], ...] = (
    strategies.Krum,
    strategies.MultiKrum,
    strategies.Bulyan,
    strategies.FedMedian,
    strategies.FedTrimmedAvg,
    strategies.QFedAvg,
    strategies.FedXgbBagging,
    strategies.FedXgbCyclic,
    strategies.DifferentialPrivacyServerSideFixedClipping,
    strategies.DifferentialPrivacyServerSideAdaptiveClipping,
)
"""Strategies that need each client's update (robust or server-side-clipped aggregation)."""


@dataclass
class RoundReport:
    """What one secure round did: who is in the sum, who dropped where, and what it cost.

    Attributes:
        round: Flower's server round (from 1).
        nodes: The Flower node ids the round started with.
        survivors: Nodes whose update is in the sum.
        dropouts: Node -> the protocol stage it went silent at.
        rejected: Why each refused node message was refused.
        declined: Node -> the reason it declined the round.
        aborted: Why the round aborted (None if it completed).
        total_examples: The summed weight the average divides by.
        error_bound: Per-coordinate bound of the decoding error.
        server_seconds: The server's protocol time.
        bytes_sent: Protocol bytes the server sent.
        bytes_received: Protocol bytes the server received.
    """

    round: int
    nodes: list[int]
    survivors: list[int] = field(default_factory=list)
    dropouts: dict[int, str] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    declined: dict[int, str] = field(default_factory=dict)
    aborted: str | None = None
    total_examples: float = 0.0
    error_bound: float = 0.0
    server_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


@dataclass
class _Round:
    session: ServerSession
    encoder: UpdateEncoder
    global_arrays: ArrayRecord
    node_of: dict[int, int]  # client id -> Flower node id
    client_of: dict[int, int]  # Flower node id -> client id
    grid: Grid
    report: RoundReport


def _cut(text: str, limit: int = 1000) -> str:
    """``text``, or its start and end if it is longer than ``limit`` (a node chooses it)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} [...] {text[-limit // 2 :]}"


def one_train_digest(messages: Iterable[Message]) -> str:
    """The digest of the one train message every node gets (:func:`train_digest`).

    ConfigError if the wrapped strategy's train messages differ per node: a server that
    trains nodes from different models or configs (lr 0 for all but one) can read one
    node's update from the sum, so a node trains only from the content its config binds.
    """
    # What configure_train sends: each message's content, typed "train".
    digests = {
        train_digest(Message(m.content, dst_node_id=0, message_type=MessageType.TRAIN))
        for m in messages
    }
    if len(digests) != 1:
        raise ConfigError(
            "the wrapped strategy's train messages differ per node (model or train config): "
            "secure aggregation needs one train message for every node"
        )
    return digests.pop()


def encode_setup(setup: Mapping[str, ConfigRecordValues], client: int) -> ConfigRecord:
    """The first message's record for ``client``: the round config and the encoding."""
    return ConfigRecord({**setup, "client-id": client})


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
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise ConfigError(f"strategy must be a Flower Strategy, got {type(strategy).__name__}")
        self.strategy = strategy
        self.run_config = dict(run_config or {})
        try:
            UpdateEncoder(  # fail now, not in round 1, for bad settings
                1,
                max_clients=max_clients or 2,
                max_examples=max_examples,
                clip=clip,
                frac_bits=frac_bits,
                bits=bits,
                weighting=weighting,
            )
        except OverflowError as exc:
            raise ConfigError(f"clip {clip!r} is out of range") from exc
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int)
        ):
            raise ConfigError(f"threshold must be an int, got {threshold!r}")
        if threshold is not None and threshold < 2:
            raise ConfigError(f"threshold must be at least 2, got {threshold!r}")
        if degree is not None and (
            isinstance(degree, bool) or not isinstance(degree, int) or degree < 2 or degree % 2
        ):
            raise ConfigError(f"degree must be an even int >= 2 (Harary graph), got {degree!r}")
        if isinstance(strategy, _NEEDS_EACH_UPDATE):
            raise ConfigError(
                f"{type(strategy).__name__} needs each client's update; secure aggregation "
                "reveals only their sum: wrap FedAvg, FedAvgM, FedProx, FedAdam, FedYogi or "
                "FedAdagrad"
            )
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"timeout must be positive seconds, got {timeout!r}")
        if not isinstance(signed, bool):
            raise ConfigError(f"signed must be a bool, got {signed!r}")
        self.signed = signed
        self.weighting = weighting
        self.max_examples = max_examples
        self.threshold = threshold
        self.degree = degree
        self.frac_bits = frac_bits
        self.clip = float(clip)
        self.bits = bits
        self.max_clients = max_clients
        self.timeout = timeout
        self.reports: dict[int, RoundReport] = {}
        self._round: _Round | None = None

    @classmethod
    def from_config(cls, strategy: Strategy, config: Mapping[str, Any]) -> SecureAggregation:
        """Settings from a Flower run config.

        Parameters:
            strategy: The Flower strategy to wrap.
            config: The run config: ``secureagg-max-examples`` (required), and optionally
                ``secureagg-threshold``, ``-degree``, ``-bits``, ``-max-clients`` (0 means the
                default), ``-frac-bits``, ``-clip``, ``-timeout``, ``-signed``, ``-weighting``.

        Returns:
            The wrapped strategy.

        Raises:
            ConfigError: A missing or ill-typed setting.
        """

        def get(name: str, kind: type, default: Any) -> Any:
            value = config.get(f"secureagg-{name}", default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
                raise ConfigError(f"secureagg-{name} must be {kind.__name__}, got {value!r}")
            return value

        if "secureagg-max-examples" not in config:
            raise ConfigError("the run config needs secureagg-max-examples")
        return cls(
            strategy,
            max_examples=get("max-examples", int, 0),
            threshold=get("threshold", int, 0) or None,
            degree=get("degree", int, 0) or None,
            bits=get("bits", int, 0) or None,
            max_clients=get("max-clients", int, 0) or None,
            frac_bits=get("frac-bits", int, 16),
            clip=get("clip", float, 1.0),
            timeout=get("timeout", float, 120.0),
            signed=get("signed", bool, False),
            weighting=get("weighting", str, "uniform"),
            run_config=config,
        )

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
        if len(nodes) < 3:
            report.aborted = f"secure aggregation needs at least 3 nodes, {len(nodes)} sampled"
            log.error("secureagg round %d skipped: %s", server_round, report.aborted)
            return []
        try:
            train = one_train_digest(messages)
        except ConfigError as exc:
            report.aborted = str(exc)
            log.error("secureagg round %d skipped: %s", server_round, report.aborted)
            return []
        d = model_size(arrays)
        start_identify = time.perf_counter()
        identities = self._identify(grid, nodes, server_round, report) if self.signed else {}
        identify_wait = time.perf_counter() - start_identify
        if self.signed:
            nodes = sorted(identities)
            if len(nodes) < 3:
                report.aborted = (
                    f"secure aggregation needs at least 3 nodes, {len(nodes)} identified"
                )
                log.error("secureagg round %d skipped: %s", server_round, report.aborted)
                return []
        client_of = {node: i + 1 for i, node in enumerate(nodes)}
        keys = {client_of[node]: key for node, key in identities.items()}
        try:
            encoder, cfg = self._round_config(server_round, len(nodes), d, keys, train)
        except ConfigError as exc:
            # How many nodes a round samples depends on who connected: settings that do not
            # fit this many skip the round (logged), they do not stop the ServerApp.
            report.aborted = f"{exc} ({len(nodes)} nodes sampled)"
            log.error("secureagg round %d skipped: %s", server_round, report.aborted)
            return []
        raw = cfg.to_bytes()
        graph, threshold = cfg.graph, cfg.threshold
        rnd = _Round(
            session=ServerSession(cfg, transport_dedupes=True),  # one reply per message
            encoder=encoder,
            global_arrays=arrays,
            node_of={c: n for n, c in client_of.items()},
            client_of=client_of,
            grid=grid,
            report=report,
        )
        self._round = rnd
        setup: dict[str, ConfigRecordValues] = {"stage": SETUP, "config": raw}
        outgoing = {client_of[node]: encode_setup(setup, client_of[node]) for node in nodes}
        report.bytes_sent += len(raw) * len(nodes)
        waited = identify_wait
        try:
            # Keys and shares first; the model goes out with the third message, so the
            # update is masked as soon as it exists and never waits in a saved session.
            waited += self._exchange(rnd, SETUP, Stage.ADVERTISE, outgoing, server_round)
            keys = rnd.session.close_stage()  # each client's neighbours' keys
            waited += self._exchange(
                rnd, stage_name(Stage.SHARE_KEYS), Stage.SHARE_KEYS, keys, server_round
            )
            deliveries = rnd.session.close_stage()  # SharesDelivery for every client in U2
            # A client masks only with t or more neighbours' shares: one with fewer would
            # train and then refuse, so it gets no model (it drops at masked-input).
            u2 = set(deliveries)
            ready = {u for u in u2 if len(graph.neighbours(u) & u2) >= threshold}
            if len(ready) < threshold:
                raise RoundAborted(
                    f"only {len(ready)} clients have {threshold} neighbours' shares "
                    f"(need {threshold}): aborted before training"
                )
        except RoundAborted as exc:
            self._round = None
            self._end(rnd, time.perf_counter() - start - waited, aborted=str(exc))
            return []
        rnd.report.server_seconds += time.perf_counter() - start - waited
        out = []
        for m in messages:
            node = m.metadata.dst_node_id
            client = client_of.get(node)  # None: left out at identify
            delivery = deliveries.get(client) if client is not None else None
            if delivery is None or client not in ready:
                continue  # dropped before its shares were routed, or would refuse: no model
            content = RecordDict(dict(m.content.items()))
            content[RECORD_KEY] = ConfigRecord(
                {"stage": stage_name(Stage.MASKED_INPUT), "data": delivery}
            )
            report.bytes_sent += len(delivery)
            out.append(
                Message(
                    content=content,
                    dst_node_id=node,
                    message_type=MessageType.TRAIN,
                    group_id=m.metadata.group_id or str(server_round),
                )
            )
        return out

    def _identify(
        self, grid: Grid, nodes: list[int], server_round: int, report: RoundReport
    ) -> dict[int, bytes]:
        """Signed mode: ask every node for its identity public key; {node: key} for those
        that answer with a well-formed key no other node gave."""
        messages = [
            Message(
                content=RecordDict({RECORD_KEY: ConfigRecord({"stage": IDENTIFY})}),
                dst_node_id=node,
                message_type=MessageType.TRAIN,
                group_id=str(server_round),
            )
            for node in nodes
        ]
        answers = grid.send_and_receive(messages, timeout=self.timeout)
        sampled = set(nodes)
        given: dict[int, bytes] = {}
        for msg in answers:
            node = msg.metadata.src_node_id
            if node not in sampled or node in given:
                continue
            if msg.has_error():
                report.declined[node] = f"error reply: {_cut(str(msg.error.reason))}"
                continue
            try:
                rec = record_of(msg)
                if rec is None:
                    report.declined[node] = "reply without secureagg's record"
                    continue
                if "declined" in rec:
                    report.declined[node] = str(rec["declined"])[:200]
                    continue
                key = payload(msg, rec)
                if rec.get("stage") != IDENTIFY or not isinstance(key, bytes) or len(key) != 32:
                    report.declined[node] = "reply is not an identify message with a 32-byte key"
                    continue
                Ed25519PublicKey.from_public_bytes(key)
            except (SecureAggError, TypeError, ValueError, KeyError) as exc:
                report.declined[node] = f"unreadable reply ({type(exc).__name__})"
                continue
            report.bytes_received += len(key)
            given[node] = key
        count: dict[bytes, int] = {}
        for key in given.values():
            count[key] = count.get(key, 0) + 1
        for node, key in list(given.items()):
            if count[key] > 1:  # which node owns it is unknowable: none of them takes part
                report.declined[node] = "its identity key is another node's too"
                del given[node]
        for node in sorted(sampled - given.keys()):
            report.dropouts[node] = IDENTIFY
        return given

    def _round_config(
        self, server_round: int, n: int, d: int, keys: Mapping[int, bytes], train: str
    ) -> tuple[UpdateEncoder, RoundConfig]:
        """The encoding and the round config for ``n`` nodes; ConfigError if they do not fit."""
        encoder = UpdateEncoder(
            d,
            max_clients=self.max_clients or n,
            max_examples=self.max_examples,
            clip=self.clip,
            frac_bits=self.frac_bits,
            bits=self.bits,
            weighting=self.weighting,
        )
        if n > encoder.quant.max_clients:
            raise ConfigError(f"{n} nodes sampled, max_clients is {self.max_clients}")
        round_id = new_round_id(server_round)
        plan = plan_round(n, degree=self.degree, threshold=self.threshold)
        cfg = RoundConfig(
            round_id=round_id,
            bits=encoder.bits,
            d=encoder.length,
            threshold=plan.threshold,
            graph=plan.graph(range(1, n + 1), round_id),
            signed=self.signed,
            identity_keys=dict(keys),
            encoding={**self.encoding(encoder), "train-content": train},
        )
        return encoder, cfg

    def encoding(self, encoder: UpdateEncoder) -> dict[str, int | float | str | bool]:
        """What a node encodes its update with, bound into the round config (and its digest).

        A node reads these from the config alone, never from a per-node field.

        Parameters:
            encoder: The round's encoder.

        Returns:
            Setting name -> value.
        """
        return {
            **encoder.public_settings(),
            "weighted-by": str(getattr(self.strategy, "weighted_by_key", "num-examples")),
            "arrays-key": str(getattr(self.strategy, "arrayrecord_key", "arrays")),
            "run-config": run_config_digest(self.run_config),
        }

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
        waited = 0.0
        session = rnd.session
        try:
            self._feed(rnd, Stage.MASKED_INPUT, replies)
            while True:
                out = session.close_stage()
                stage = session.stage
                if stage is None:
                    break
                waited += self._exchange(rnd, stage_name(stage), stage, out, server_round)
        except RoundAborted as exc:
            self._end(rnd, time.perf_counter() - start - waited, aborted=str(exc))
            return None, MetricRecord({"secureagg-aborted": 1})
        result = session.result
        try:
            decoded = rnd.encoder.decode(result.total, len(result.survivors))
            new = apply_update(rnd.global_arrays, decoded.average)
        except SecureAggError as exc:
            # A client can put any value in its masked input: a sum whose weight does not
            # decode (zero or negative) fails the round; it must not stop the ServerApp.
            why = f"the unmasked sum does not decode ({exc}): a client sent a bad input"
            self._end(rnd, time.perf_counter() - start - waited, aborted=why)
            return None, MetricRecord({"secureagg-aborted": 1})
        report.survivors = sorted(rnd.node_of[c] for c in result.survivors)
        report.total_examples = decoded.total_examples
        report.error_bound = decoded.error_bound
        weighted_by = str(getattr(self.strategy, "weighted_by_key", "num-examples"))
        arrays_key = str(getattr(self.strategy, "arrayrecord_key", "arrays"))
        examples = max(1, round(decoded.total_examples))
        average = Message(
            content=RecordDict({arrays_key: new, "metrics": MetricRecord({weighted_by: examples})}),
            dst_node_id=0,
            message_type=MessageType.TRAIN,
        )
        arrays, metrics = self.strategy.aggregate_train(server_round, [average])
        self._end(rnd, time.perf_counter() - start - waited)
        merged = MetricRecord(dict(metrics.items()) if metrics is not None else {})
        merged["secureagg-survivors"] = len(report.survivors)
        merged["secureagg-dropped"] = len(report.nodes) - len(report.survivors)
        merged["secureagg-error-bound"] = float(report.error_bound)
        log.info(
            "secureagg round %d: %d of %d nodes in the sum, error bound %.3g",
            server_round,
            len(report.survivors),
            len(report.nodes),
            report.error_bound,
        )
        return arrays, merged

    def _exchange(
        self,
        rnd: _Round,
        tag: str,
        stage: Stage,
        outgoing: Mapping[int, bytes | ConfigRecord],
        server_round: int,
    ) -> float:
        """Send one stage's messages, feed the replies; the seconds spent waiting."""
        messages = []
        for cid, data in outgoing.items():
            record = (
                data
                if isinstance(data, ConfigRecord)
                else ConfigRecord({"stage": tag, "data": data})
            )
            if not isinstance(data, ConfigRecord):
                rnd.report.bytes_sent += len(data)
            messages.append(
                Message(
                    content=RecordDict({RECORD_KEY: record}),
                    dst_node_id=rnd.node_of[cid],
                    message_type=MessageType.TRAIN,
                    group_id=str(server_round),
                )
            )
        t0 = time.perf_counter()
        answers = rnd.grid.send_and_receive(messages, timeout=self.timeout)
        waited = time.perf_counter() - t0
        self._feed(rnd, stage, answers)
        return waited

    def _end(self, rnd: _Round, seconds: float, aborted: str | None = None) -> None:
        """Fill the round's report from its session."""
        report, session = rnd.report, rnd.session
        report.server_seconds += seconds
        report.aborted = aborted
        left_out = {n: s for n, s in report.dropouts.items() if s == IDENTIFY}
        report.dropouts = {
            **left_out,
            **{rnd.node_of[c]: stage_name(s) for c, s in sorted(session.dropouts.items())},
        }
        report.rejected = [
            f"{stage_name(r.stage)}: node {rnd.node_of.get(r.client or 0, '?')}: {r.reason}"
            for r in session.rejected
        ]
        if aborted is not None:
            log.error("secureagg round %d aborted: %s", report.round, aborted)

    def _feed(self, rnd: _Round, stage: Stage, replies: Iterable[Message]) -> None:
        """Hand each reply's bytes to the session; anything else counts its node as dropped."""
        want = stage_name(stage)
        for msg in replies:
            node = msg.metadata.src_node_id
            client = rnd.client_of.get(node)
            if client is None:
                continue  # not a node of this round
            if msg.has_error():
                rnd.report.declined[node] = f"error reply: {_cut(str(msg.error.reason))}"
                continue
            try:
                rec = record_of(msg)
                if rec is None:
                    rnd.report.declined[node] = "reply without secureagg's record"
                    continue
                if "declined" in rec:
                    rnd.report.declined[node] = str(rec["declined"])[:200]
                    continue
                data = payload(msg, rec)
                if rec.get("stage") != want or data is None:
                    rnd.report.declined[node] = f"reply is not a {want} message"
                    continue
            except (SecureAggError, TypeError, ValueError, KeyError) as exc:
                rnd.report.declined[node] = f"unreadable reply ({type(exc).__name__})"
                continue
            rnd.report.bytes_received += len(data)
            rnd.session.receive(data, sender=client)

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

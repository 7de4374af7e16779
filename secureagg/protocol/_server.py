"""The server side of a round: a sans-I/O state machine that streams masked inputs."""

from __future__ import annotations

import hmac
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

from cryptography.hazmat.primitives.poly1305 import Poly1305

from secureagg._exceptions import ConfigError, DecodeError, RoundAborted, ShareError
from secureagg.hazmat import (
    LABEL_MASK,
    SHARE_SIZE,
    KeyPair,
    PackedSum,
    apply_masks,
    combine,
    combine_many,
    derive_key,
    is_low_order,
    reduce_into,
    zeros,
)
from secureagg.protocol._codec import (
    CIPHERTEXT_SIZE,
    PackedInput,
    PackedShareKeys,
    decode_packed,
    encode,
    key_entry_bytes,
    keys_broadcast_bytes,
    pairs_bytes,
    seed_commitments_bytes,
    shares_delivery_bytes,
)
from secureagg.protocol._commitment import (
    graph_commitment,
    graph_seed,
    keys_digest,
    seed_commitment,
)
from secureagg.protocol._config import RoundConfig, Stage
from secureagg.protocol._graph import Graph, check_client_id
from secureagg.protocol._messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeyEntry,
    SeedReveal,
    UnmaskRequest,
    UnmaskResponse,
)
from secureagg.protocol._server_state import (
    EXPECTED,
    STAGE_OF,
    Aborted,
    AggregateResult,
    Collecting,
    CollectKeys,
    CollectMasked,
    CollectReveals,
    CollectShares,
    CollectSignatures,
    CollectUnmask,
    Finished,
    Packed,
    Rejection,
    ServerState,
    tables,
)
from secureagg.protocol._signing import advertise_payload, survivors_payload, verify

__all__ = ["AggregateResult", "Rejection", "ServerSession", "set_server_workers"]

_DEFAULT_WORKERS = min(2, os.cpu_count() or 1)


def _check_workers(workers: object) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers must be a positive int, got {workers!r}")
    return workers


def set_server_workers(workers: int) -> None:
    """The threads a new ServerSession uses to remove masks (1: single-core, no threads)."""
    global _DEFAULT_WORKERS
    _DEFAULT_WORKERS = _check_workers(workers)


class Outbox(Mapping[int, bytes]):
    """A closed stage's messages by recipient, each one built when it is read.

    Read in sending order, it builds up to ``read_ahead`` messages at once (the one asked
    for and the next ones, kept until read): consecutive recipients share most of what
    their messages are built from, which then stays in cache even when the reader does
    other work between reads. Read out of order, it stops reading ahead and drops what it
    kept. Each message is built at least once per read of it, never more than once ahead.

    Parameters:
        recipients: Who gets a message, in sending order.
        build: Recipient -> its message's bytes.
        read_ahead: Messages built at once when read in order (1: one at a time).
    """

    __slots__ = ("_ahead", "_build", "_ids", "_index", "_read_ahead")

    def __init__(
        self, recipients: Iterable[int], build: Callable[[int], bytes], read_ahead: int = 1
    ) -> None:
        self._ids = tuple(recipients)
        self._index = {u: i for i, u in enumerate(self._ids)}
        self._build = build
        self._read_ahead = max(1, read_ahead)
        self._ahead: dict[int, bytes] = {}

    def __getitem__(self, recipient: int) -> bytes:
        ahead = self._ahead
        if recipient in ahead:
            return ahead.pop(recipient)
        i = self._index.get(recipient)
        if i is None:
            raise KeyError(recipient)
        data = self._build(recipient)
        if ahead:  # not read in sending order: stop reading ahead
            ahead.clear()
            self._read_ahead = 1
        else:
            for u in self._ids[i + 1 : i + self._read_ahead]:
                ahead[u] = self._build(u)
        return data

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


_WIRE_NAME: dict[type, str] = {PackedInput: "MaskedInput", PackedShareKeys: "ShareKeys"}

_READ_AHEAD = 32  # key broadcasts / share deliveries built at once (O(k) bytes each)

_MAX_RETRIES = 32  # leave-one-out attempts when the first t shares do not rebuild a secret
_BATCH = 1024  # secrets rebuilt per combine_many call (one modular inversion each)


class ServerSession:
    """The server's side of one round.

    Call :meth:`receive` with each client message as it arrives, then :meth:`close_stage`
    when the stage's deadline passes: it returns the messages to send, keyed by client id,
    or raises RoundAborted. After the unmask stage, :attr:`result`.

    ``receive`` never raises on client bytes. A bad message is logged in :attr:`rejected`
    and its sender counts as dropped; a byte-identical repeat is only counted in
    :attr:`retransmissions`; a different second masked input is logged and the first stands
    (docs/protocol.md, "What the server does with bad client messages").

    Parameters:
        config: The round config.
        transport_dedupes: The transport delivers at most one message per client per stage
            (Flower does: one reply per instruction). Messages are then not fingerprinted,
            and any second message from a client in a stage is handled as a conflicting one.
        workers: Threads that add each masked input into the sum and that regenerate and
            remove the masks when the round closes (AES and numpy run outside the GIL),
            every thread ended before the call returns; 1 is the single-core mode.
            Default: 2, or 1 on a one-core machine (:func:`set_server_workers` changes
            it). Threads start only for d of at least 2^22 (hazmat.PackedSum,
            hazmat.apply_masks). The sum does not depend on it, also with several
            sessions closing in threads at once.
    """

    def __init__(
        self, config: RoundConfig, *, transport_dedupes: bool = False, workers: int | None = None
    ) -> None:
        self.config = config
        self._graph: Graph | None = None if config.commit_reveal else config.graph
        self.transport_dedupes = bool(transport_dedupes)
        self.workers = _check_workers(_DEFAULT_WORKERS if workers is None else workers)
        self.rejected: list[Rejection] = []
        self.dropouts: dict[int, Stage] = {}
        self._state: ServerState = CollectKeys()
        self.retransmissions = 0  # byte-identical repeats, ignored
        self._fingerprints: dict[int, bytes] = {}  # this stage: sender -> tag of its message
        self._fingerprint_key = os.urandom(32)  # tags never leave the session
        self._bad: set[int] = set()

    @property
    def stage(self) -> Stage | None:
        """The stage being collected; None when finished or aborted."""
        return STAGE_OF.get(type(self._state))

    @property
    def graph(self) -> Graph:
        """The round's graph; in a commit-reveal round, once every committed share of its
        seed has been revealed (RoundAborted before)."""
        if self._graph is None:
            raise RoundAborted("the graph's seed is not revealed yet")
        return self._graph

    @property
    def result(self) -> AggregateResult:
        """The aggregate, once the unmask stage is closed."""
        if not isinstance(self._state, Finished):
            raise RoundAborted("the round has not finished")
        return self._state.result

    # -- receiving -------------------------------------------------------------------------

    def receive(self, data: bytes, *, sender: int | None = None) -> None:
        """Take one client message. Bad messages are recorded, never raised.

        Parameters:
            data: The message.
            sender: The client id the transport authenticated, if it has one: a message that
                claims another id is rejected, counted against ``sender``, not the claimed id.

        Raises:
            ConfigError: ``sender`` is not a client id.
        """
        if sender is not None:
            check_client_id(sender)
        state = self._state
        if isinstance(state, (Finished, Aborted)):
            return
        stage = STAGE_OF[type(state)]
        try:
            msg = decode_packed(data)  # masked inputs stay packed until added into the sum
        except DecodeError as exc:
            self._reject(stage, sender, f"malformed message ({exc})")
            return
        claimed = getattr(msg, "sender", None)
        if claimed is None or msg.round_id != self.config.round_id:
            self._reject(stage, sender, "not a client message of this round")
            return
        if sender is not None and claimed != sender:
            self._bad.add(sender)
            self._reject(
                stage, sender, f"client {sender} sent a message claiming to be client {claimed}"
            )
            return
        sender = claimed
        if sender not in self.config.graph or sender in self._bad:
            self._reject(stage, sender, "unknown or already rejected client")
            return
        if not isinstance(msg, EXPECTED[type(state)]):
            kind = _WIRE_NAME.get(type(msg), type(msg).__name__)
            self._reject(stage, sender, f"{kind} does not belong to {stage.name}")
            return
        first = self._fingerprints.get(sender)
        fingerprint = (
            b"" if self.transport_dedupes else Poly1305.generate_tag(self._fingerprint_key, data)
        )
        if first is not None:
            if not self.transport_dedupes and hmac.compare_digest(first, fingerprint):
                self.retransmissions += 1  # the same bytes again: harmless, already handled
            else:
                self._on_conflict(state, stage, sender)
            return
        self._fingerprints[sender] = fingerprint
        reason = self._accept(state, msg)
        if reason is not None:
            self._bad.add(sender)
            self._reject(stage, sender, reason)

    def _reject(self, stage: Stage, client: int | None, reason: str) -> None:
        self.rejected.append(Rejection(stage, client, reason))

    def _on_conflict(self, state: Collecting, stage: Stage, sender: int) -> None:
        """A second, different message from one sender in one stage (see docs/protocol.md)."""
        if isinstance(state, CollectMasked):
            # The first is already folded into the sum and cannot be taken out without
            # revealing the input: it stands, the second is refused.
            self._reject(stage, sender, "a different second masked input (the first one stands)")
            return
        self._bad.add(sender)
        for table in tables(state):
            table.pop(sender, None)
        self._reject(stage, sender, "two different messages in one stage: client dropped")

    def _accept(self, state: Collecting, msg: Any) -> str | None:
        """Store a message of the current stage; return why it is refused, or None."""
        if isinstance(state, CollectKeys):
            return self._accept_keys(state, msg)
        if isinstance(state, CollectReveals):
            return self._accept_reveal(state, msg)
        if isinstance(state, CollectShares):
            return self._accept_shares(state, msg)
        if isinstance(state, CollectMasked):
            return self._accept_masked(state, msg)
        if isinstance(state, CollectSignatures):
            return self._accept_signature(state, msg)
        return self._accept_unmask(state, msg)

    def _accept_keys(self, state: CollectKeys, msg: AdvertiseKeys) -> str | None:
        cfg = self.config
        if msg.c_pk == msg.s_pk or msg.c_pk in state.seen_keys or msg.s_pk in state.seen_keys:
            return "a key equal to one already advertised"
        if is_low_order(msg.c_pk) or is_low_order(msg.s_pk):  # a table lookup, no X25519
            return "an invalid (low-order) public key"
        if bool(msg.graph_commitment) != cfg.commit_reveal:
            return "a graph-seed commitment " + ("missing" if cfg.commit_reveal else "unasked for")
        if cfg.signed:
            payload = advertise_payload(cfg, msg.sender, msg.c_pk, msg.s_pk, msg.graph_commitment)
            if not verify(cfg.identity_keys[msg.sender], msg.signature, payload):
                return "bad signature on advertised keys"
        elif msg.signature:
            return "a signature in an unsigned round"
        if msg.graph_commitment:
            state.graph_commitments[msg.sender] = msg.graph_commitment
        state.seen_keys.update((msg.c_pk, msg.s_pk))
        state.keys[msg.sender] = KeyEntry(msg.sender, msg.c_pk, msg.s_pk, msg.signature)
        return None

    def _accept_reveal(self, state: CollectReveals, msg: SeedReveal) -> str | None:
        commitment = state.graph_commitments.get(msg.sender)
        if commitment is None:
            return "a graph-seed reveal from a client not on the committed list"
        opened = graph_commitment(self.config.digest, msg.sender, msg.reveal)
        if not hmac.compare_digest(opened, commitment):
            return "a graph-seed reveal that does not open its commitment"
        state.reveals[msg.sender] = msg.reveal
        return None

    def _accept_shares(self, state: CollectShares, msg: PackedShareKeys) -> str | None:
        if msg.sender not in state.u1:
            return "shares from a client that did not advertise keys"
        expected = sorted(self.graph.neighbours(msg.sender) & state.u1.keys())
        if list(msg.recipients) != expected:
            return "shares not addressed to exactly its neighbours in U1"
        if not hmac.compare_digest(msg.keys_digest, state.sent_keys[msg.sender]):
            return "it received other keys than the server sent"
        # kept compact until delivery: the recipients' ids (the graph's int objects), the
        # ciphertexts as one byte string (as the codec gave them: no tuple per recipient)
        state.inbox[msg.sender] = (tuple(expected), msg.ciphertexts)
        state.commitments[msg.sender] = msg.seed_commitment
        return None

    def _accept_masked(self, state: CollectMasked, msg: PackedInput) -> str | None:
        cfg = self.config
        if msg.sender not in state.u2:
            return "a masked input from a client not in U2"
        if msg.bits != cfg.bits:
            return f"elements of {msg.bits} bits, expected b={cfg.bits}"
        if msg.d != cfg.d:
            return f"vector of length {msg.d}, expected {cfg.d}"
        # decoding checked exactly b bits per element: every element lies in Z_{2^b}
        if msg.excluded and not set(msg.excluded) <= self._senders_to(msg.sender, state.u2):
            return "excluded clients whose shares it was never sent"
        if msg.excluded:
            return f"could not authenticate the shares of {list(msg.excluded)}: input discarded"
        # Summed mod 2^(word width) straight from the packed bytes (no unpacked copy),
        # reduced mod 2^b once when the stage closes: 2^b divides the word's modulus.
        state.summed.add(msg.packed)
        state.u3.add(msg.sender)
        return None

    def _accept_signature(self, state: CollectSignatures, msg: ConsistencySignature) -> str | None:
        if msg.sender not in state.u3:
            return "a signature from a client not in U3"
        payload = survivors_payload(self.config, state.u3)
        if not verify(self.config.identity_keys[msg.sender], msg.signature, payload):
            return "bad signature on the survivor list"
        state.signatures[msg.sender] = msg.signature
        return None

    def _accept_unmask(self, state: CollectUnmask, msg: UnmaskResponse) -> str | None:
        u = msg.sender
        if u not in state.asked:
            return "an unmask response from a client that was not asked"
        nbrs = self.graph.neighbours(u)  # O(k) checks: alive/gone are built once
        seed_ids = sorted((nbrs & state.alive) | {u})
        if [v for v, _ in msg.seed_shares] != seed_ids:
            return "self-mask shares for the wrong clients"
        key_ids = sorted(nbrs & state.gone)
        if [v for v, _ in msg.key_shares] != key_ids:
            return "key shares for the wrong clients"
        seeds, keys = _joined(msg.seed_shares), _joined(msg.key_shares)
        state.responses[u] = (tuple(seed_ids), seeds, tuple(key_ids), keys)  # one flat tuple
        return None

    # -- closing stages --------------------------------------------------------------------

    def close_stage(self) -> dict[int, bytes]:
        """End the current stage.

        Returns:
            The messages to send next, keyed by recipient.

        Raises:
            RoundAborted: Too few clients remain.
        """
        return dict(self.close_stage_lazily())

    def close_stage_lazily(self) -> Mapping[int, bytes]:
        """:meth:`close_stage`, with the key and share deliveries built one at a time.

        The stage closes now (every check, abort and digest happens here); each message of
        the two largest stages (a KeysBroadcast, a SharesDelivery: O(k) each, O(n*k) in
        all) is encoded when it is read (read in sending order, 32 at a time), so a caller
        that sends each as it reads it never holds them all. Reading one twice builds the
        same bytes twice.

        Returns:
            The messages to send next, keyed by recipient.

        Raises:
            RoundAborted: Too few clients remain.
        """
        state = self._state
        if isinstance(state, Aborted):
            raise RoundAborted(f"the round was aborted: {state.reason}")
        if isinstance(state, Finished):
            return Outbox((), bytes)
        self._fingerprints.clear()
        self._bad.clear()
        try:
            if isinstance(state, CollectKeys):
                return self._close_keys(state)
            if isinstance(state, CollectReveals):
                return self._close_reveals(state)
            if isinstance(state, CollectShares):
                return self._close_shares(state)
            if isinstance(state, CollectMasked):
                return self._close_masked(state)
            if isinstance(state, CollectSignatures):
                return self._close_signatures(state)
            return self._close_unmask(state)
        except RoundAborted as exc:
            self._state = Aborted(str(exc))
            raise

    def _enough(
        self, stage: Stage, expected: Iterable[int], got: Iterable[int], need: int | None = None
    ) -> None:
        """Record who of ``expected`` is missing; abort unless ``need`` (default t) answered."""
        got_set = set(got)
        for u in expected:
            if u not in got_set:
                self.dropouts.setdefault(u, stage)
        need = self.config.threshold if need is None else need
        if len(got_set) < need:
            self._abort(f"only {len(got_set)} clients completed {stage.name} (need {need})")

    def _abort(self, reason: str) -> NoReturn:
        raise RoundAborted(reason)

    def _close_keys(self, state: CollectKeys) -> Mapping[int, bytes]:
        cfg = self.config
        self._enough(Stage.ADVERTISE, cfg.graph.ids, state.keys)
        if not cfg.commit_reveal:
            return self._send_keys(state.keys, pairs_bytes(()))
        # every advertiser gets the same committed list (encoded once), then reveals its r_u
        listed = pairs_bytes(tuple(sorted(state.graph_commitments.items())))
        self._state = CollectReveals(state.keys, state.graph_commitments)
        return Outbox(
            sorted(state.graph_commitments),
            lambda u: seed_commitments_bytes(cfg.round_id, u, listed),
        )

    def _close_reveals(self, state: CollectReveals) -> Mapping[int, bytes]:
        """Every committer must have revealed: the round aborts otherwise (a seed over a
        subset would let the server pick among 2^f seeds by dropping f committers)."""
        missing = sorted(state.graph_commitments.keys() - state.reveals.keys())
        for u in missing:
            self.dropouts.setdefault(u, Stage.REVEAL)
        if missing:
            self._abort(
                f"clients {missing[:10]} committed to the graph seed and did not reveal it: "
                "the round aborts (a seed from a subset could be chosen by dropping clients)"
            )
        reveals = tuple(sorted(state.reveals.items()))
        revealed = pairs_bytes(reveals)  # the same for every recipient: encoded once
        self._graph = self.config.graph.with_seed(graph_seed(self.config.digest, revealed))
        return self._send_keys(state.u1, revealed)

    def _send_keys(self, u1: dict[int, KeyEntry], revealed: bytes) -> Mapping[int, bytes]:
        cfg, graph = self.config, self.graph
        entry = {v: key_entry_bytes(e) for v, e in u1.items()}  # each encoded once, not k times

        def broadcast(u: int) -> bytes:
            members = sorted((graph.neighbours(u) & u1.keys()) | {u})
            return keys_broadcast_bytes(cfg.round_id, u, [entry[v] for v in members], revealed)

        recipients = graph.in_ring_order(u1)  # neighbours' entries stay in cache
        self._state = CollectShares(u1, {u: keys_digest(broadcast(u)) for u in recipients})
        return Outbox(recipients, broadcast, _READ_AHEAD)

    def _senders_to(self, w: int, u2: frozenset[int]) -> frozenset[int]:
        """The clients whose shares w was sent: its neighbours in U2 (each of them addressed
        exactly its neighbours in U1, checked on arrival, and w is in U1)."""
        return self.graph.neighbours(w) & u2

    def _close_shares(self, state: CollectShares) -> Mapping[int, bytes]:
        cfg = self.config
        self._enough(Stage.SHARE_KEYS, state.u1, state.inbox)
        u2 = frozenset(state.inbox)
        inbox = state.inbox
        size = CIPHERTEXT_SIZE
        prefix = {v: v.to_bytes(4, "big") for v in u2}

        def delivery(w: int) -> bytes:
            senders = sorted(self._senders_to(w, u2))
            pairs: list[bytes] = []
            for v in senders:
                ids, blob = inbox[v]
                i = bisect_left(ids, w)  # v addressed all its neighbours in U1, w among them
                pairs += (prefix[v], blob[i * size : (i + 1) * size])
            return shares_delivery_bytes(cfg.round_id, w, len(senders), pairs)

        acc = zeros(cfg.d, cfg.bits)
        summed = PackedSum(acc, cfg.bits, workers=self.workers)
        self._state = CollectMasked(state.u1, state.commitments, u2, acc, summed)
        # in ring order: consecutive recipients share most senders, whose blobs stay in cache
        return Outbox(self.graph.in_ring_order(u2), delivery, _READ_AHEAD)

    def _close_masked(self, state: CollectMasked) -> Mapping[int, bytes]:
        cfg = self.config
        self._enough(Stage.MASKED_INPUT, state.u2, state.u3)
        state.summed.flush()  # acc now holds the whole sum
        reduce_into(state.acc, cfg.bits)
        u3 = tuple(sorted(state.u3))
        dropped = tuple(sorted(state.u2 - state.u3))
        if cfg.signed:
            self._state = CollectSignatures(
                state.u1, state.commitments, state.u2, state.acc, u3, dropped
            )
            return {u: encode(ConsistencyRequest(cfg.round_id, u, u3)) for u in u3}
        self._state = CollectUnmask(
            state.u1,
            state.commitments,
            state.u2,
            state.acc,
            u3,
            dropped,
            asked=frozenset(u3),
        )
        out = {}
        alive_set, gone_set = frozenset(u3), frozenset(dropped)
        for u in self.graph.in_ring_order(u3):  # unsigned: each gets only its neighbours' part
            mine = self.graph.neighbours(u) | {u}  # O(k log k): no scan of U3 per client
            alive = tuple(sorted(mine & alive_set))
            gone = tuple(sorted(mine & gone_set))
            out[u] = encode(UnmaskRequest(cfg.round_id, u, alive, gone))
        return out

    def _close_signatures(self, state: CollectSignatures) -> Mapping[int, bytes]:
        cfg = self.config
        self._enough(Stage.CONSISTENCY, state.u3, state.signatures, self.config.consistency_quorum)
        sigs = tuple(sorted(state.signatures.items()))
        asked = frozenset(state.signatures)
        self._state = CollectUnmask(
            state.u1,
            state.commitments,
            state.u2,
            state.acc,
            state.u3,
            state.dropped,
            asked=asked,
        )
        msg = {u: UnmaskRequest(cfg.round_id, u, state.u3, state.dropped, sigs) for u in asked}
        return {u: encode(m) for u, m in msg.items()}

    def _close_unmask(self, state: CollectUnmask) -> Mapping[int, bytes]:
        cfg = self.config
        self._enough(Stage.UNMASK, state.asked, state.responses)
        graph, answers = self.graph, state.responses
        # who can hold v's shares: its neighbours (and v itself, for its self-mask seed)
        seed_shares = _ShareTable({x: a[:2] for x, a in answers.items()}, graph.neighbours, True)
        key_shares = _ShareTable({x: a[2:] for x, a in answers.items()}, graph.neighbours, False)
        seeds = self._reconstruct_all(
            state.u3,
            seed_shares,
            "self-mask seed",
            lambda v: _commits(cfg, v, state.commitments),
        )
        alive = state.alive
        partners_of: dict[int, list[int]] = {}
        for v in state.dropped:
            # v is in U2, so every neighbour of v in U3 was sent v's shares and masked with v
            if mine := self.graph.neighbours(v) & alive:
                partners_of[v] = sorted(mine)
        keys = self._reconstruct_all(
            list(partners_of), key_shares, "mask key", lambda v: _opens(state.u1[v].s_pk)
        )
        pair_seeds: list[tuple[bytes, bool]] = []  # (seed, the survivor added it)
        for (v, partners), s_sk in zip(partners_of.items(), keys, strict=True):
            dropped_keys = KeyPair.from_private(s_sk)
            for u in partners:
                shared = dropped_keys.agree(state.u1[u].s_pk)
                seed = derive_key(shared, label=LABEL_MASK, id_a=u, id_b=v, round_id=cfg.digest)
                pair_seeds.append((seed, u < v))
        acc = state.acc
        apply_masks(
            acc,
            cfg.bits,
            subtract=seeds + [seed for seed, added in pair_seeds if added],
            add=[seed for seed, added in pair_seeds if not added],
            workers=self.workers,
        )
        self._state = Finished(AggregateResult(acc, alive))
        return {}

    def _reconstruct_all(
        self,
        vs: Sequence[int],
        table: _ShareTable,
        what: str,
        check_of: Callable[[int], Callable[[bytes], bool]],
    ) -> list[bytes]:
        """:meth:`_reconstruct` for each of ``vs``: each secret from its first t shares, in
        batches of _BATCH secrets (one modular inversion per batch), then the slow path with
        retries for any that did not rebuild or failed its check."""
        t = self.config.threshold
        for v in vs:
            count = table.count(v)
            if count < t:
                self._abort(f"only {count} shares of client {v}'s {what} (threshold {t})")
        rebuilt: dict[int, bytes | None] = {}
        # batches of neighbours on the ring share their holders, whose answers are read once
        # per batch; the working ints are O(_BATCH * t)
        order = self.graph.in_ring_order(vs)
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            for v, secret in zip(batch, combine_many(table.firsts(batch, t), t), strict=True):
                ok = isinstance(secret, bytes) and check_of(v)(secret)
                rebuilt[v] = secret if ok and isinstance(secret, bytes) else None
        # the slow path in the order of vs, as each secret's retries always ran
        return [rebuilt[v] or self._reconstruct(v, table, what, check_of(v)) for v in vs]

    def _reconstruct(
        self,
        v: int,
        table: _ShareTable,
        what: str,
        check: Callable[[bytes], bool] = lambda _: True,
    ) -> bytes:
        """Rebuild a secret from exactly t shares; if that fails and more shares arrived,
        leave one holder out at a time (so one bad share does not sink the round)."""
        t = self.config.threshold
        shares = table.shares(v)
        if len(shares) < t:
            self._abort(f"only {len(shares)} shares of client {v}'s {what} (threshold {t})")
        holders = sorted(shares)
        tries = [holders[:t]]
        if len(holders) > t:
            tries += [(holders[:i] + holders[i + 1 :])[:t] for i in range(min(t, _MAX_RETRIES))]
        for subset in tries:
            try:
                secret = combine({x: shares[x] for x in subset}, t)
            except ShareError:
                continue
            if check(secret):
                return secret
        self._abort(f"client {v}'s {what} could not be rebuilt from the shares received")


def _joined(pairs: Sequence[tuple[int, bytes]]) -> bytes:
    """The shares of (id, share) pairs back to back (every share is SHARE_SIZE bytes: the
    codec reads them so)."""
    return b"".join([share for _, share in pairs])


class _ShareTable:
    """One kind of unmask share, by the client whose secret it is, read from the holders'
    packed answers when that secret is rebuilt (no table of every share is built).

    Parameters:
        answers: Holder -> its shares of this kind, packed.
        neighbours: Client -> its neighbours: the only holders of its shares.
        own_too: A client also holds a share of its own secret (the self-mask seed).
    """

    __slots__ = ("_answers", "_neighbours", "_own_too")

    def __init__(
        self,
        answers: dict[int, Packed],
        neighbours: Callable[[int], frozenset[int]],
        own_too: bool,
    ) -> None:
        self._answers = answers
        self._neighbours = neighbours
        self._own_too = own_too

    def _holders(self, v: int) -> Iterator[tuple[int, int, bytes]]:
        """(holder, index of v's share in its answer, its shares), holders ascending."""
        answers = self._answers
        for x in sorted(self._candidates(v)):
            found = answers.get(x)
            if found is None:
                continue
            ids, blob = found
            i = bisect_left(ids, v)
            if i < len(ids) and ids[i] == v:
                yield x, i, blob

    def _candidates(self, v: int) -> frozenset[int]:
        return self._neighbours(v) | {v} if self._own_too else self._neighbours(v)

    def count(self, v: int) -> int:
        """How many holders answered among those that hold a share of v's secret (each
        answer was checked on arrival to hold exactly its neighbours' shares of this kind)."""
        answers = self._answers
        own = self._own_too and v in answers
        return sum([x in answers for x in self._neighbours(v)]) + own

    def firsts(self, vs: Sequence[int], t: int) -> list[dict[int, bytes]]:
        """For each secret of ``vs``: holder -> share for its first t holders by id. Every
        answer that holds one of them is read once (neighbours on the ring share holders)."""
        where: dict[int, dict[int, int]] = {v: {} for v in vs}  # v -> holder -> index
        holders: set[int] = set()
        for v in vs:
            holders.update(self._neighbours(v))
            if self._own_too:
                holders.add(v)
        answers, size = self._answers, SHARE_SIZE
        for x in holders:
            found = answers.get(x)
            if found is None:
                continue
            for i, v in enumerate(found[0]):
                mine = where.get(v)
                if mine is not None:
                    mine[x] = i
        out = []
        for v in vs:
            mine = where[v]
            out.append(
                {x: answers[x][1][mine[x] * size : (mine[x] + 1) * size] for x in sorted(mine)[:t]}
            )
        return out

    def shares(self, v: int) -> dict[int, bytes]:
        """Holder -> its share of v's secret, every one that arrived (the slow path)."""
        return {x: blob[i * SHARE_SIZE : (i + 1) * SHARE_SIZE] for x, i, blob in self._holders(v)}


def _opens(public: bytes) -> Callable[[bytes], bool]:
    """A check that a rebuilt X25519 private key belongs to ``public``."""

    def check(private: bytes) -> bool:
        return KeyPair.from_private(private).public == public

    return check


def _commits(cfg: RoundConfig, client: int, table: dict[int, bytes]) -> Callable[[bytes], bool]:
    """A check that a rebuilt self-mask seed is the one ``client`` committed to."""

    def check(seed: bytes) -> bool:
        return hmac.compare_digest(seed_commitment(cfg.round_id, client, seed), table[client])

    return check

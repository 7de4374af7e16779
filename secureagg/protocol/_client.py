"""The client side of a round: a sans-I/O state machine, one small state class per stage."""

from __future__ import annotations

import hashlib
import os
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg._exceptions import (
    AuthenticationError,
    ConfigError,
    DecodeError,
    InvalidKeyError,
    RoundAborted,
    SecureAggError,
)
from secureagg.hazmat import (
    LABEL_MASK,
    LABEL_SHARE_ENC,
    SHARE_SIZE,
    KeyPair,
    MaskBuffer,
    derive_key,
    element_dtype,
    open_sealed,
    seal,
    split,
)
from secureagg.protocol._client_state import (
    STAGE_OF,
    Aborted,
    Advertised,
    ClientState,
    Done,
    Fresh,
    Holdings,
    InputSent,
    Records,
    Revealed,
    SharesSent,
    Signed,
)
from secureagg.protocol._codec import decode, encode, pairs_tail
from secureagg.protocol._commitment import (
    COMMITMENT_SIZE,
    REVEAL_SIZE,
    commitments_digest,
    graph_commitment,
    graph_seed,
    keys_digest,
    opened_commitments,
    seed_commitment,
)
from secureagg.protocol._config import RoundConfig, Stage
from secureagg.protocol._graph import Graph, check_client_id
from secureagg.protocol._journal import FileJournal, Journal, MemoryJournal
from secureagg.protocol._messages import (
    AdvertiseKeys,
    ConsistencyRequest,
    ConsistencySignature,
    KeysBroadcast,
    MaskedInput,
    SeedCommitments,
    SeedReveal,
    ShareKeys,
    SharesDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from secureagg.protocol._persist import decode_state, encode_state
from secureagg.protocol._policy import ClientPolicy
from secureagg.protocol._signing import (
    advertise_payload,
    identity_public,
    sign,
    survivors_payload,
    verify,
)

__all__ = ["ClientSession"]

_SEED_SIZE = 32
_KEY_SIZE = 32  # a derived share-encryption key, an X25519 public key
_HASH = 32
_KEPT = (Stage.REVEAL, Stage.CONSISTENCY, Stage.UNMASK)  # replies the journal keeps whole


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class ClientSession:
    """One client's side of one round. Feed it the server's bytes; send back what it returns.

    Every refusal raises RoundAborted (the client then stays aborted) and reveals no share.
    A session that meets a journal entry of its own round re-sends the recorded reply to the
    identical request, or refuses: it never reveals its share of the graph seed for a second
    committed list, masks a second input with the same masks, signs a second survivor list,
    or answers a second unmask request.

    Parameters:
        config: The round config the server sent.
        client_id: This client's id.
        identity: The client's Ed25519 key, required in signed mode.
        policy: What the client accepts (default :class:`ClientPolicy`: at least a majority
            threshold); a config it refuses raises RoundAborted here, before any key exists.
        journal: Where the client records each reply that commits it (its graph-seed reveal,
            masked input, consistency signature and unmask answer), before the reply leaves
            (default: a :class:`MemoryJournal`, which does not outlive the process).
    """

    def __init__(
        self,
        config: RoundConfig,
        client_id: int,
        *,
        identity: Ed25519PrivateKey | None = None,
        policy: ClientPolicy | None = None,
        journal: Journal | None = None,
    ) -> None:
        check_client_id(client_id)
        if client_id not in config.graph:
            raise ConfigError(f"client {client_id} is not in the round's graph")
        if config.signed:
            if identity is None:
                raise ConfigError("signed mode needs the client's Ed25519 identity key")
            if identity_public(identity) != config.identity_keys[client_id]:
                raise ConfigError("the identity key does not match the round config")
        policy = ClientPolicy() if policy is None else policy
        if not isinstance(policy, ClientPolicy):
            raise ConfigError(f"policy must be a ClientPolicy, got {type(policy).__name__}")
        why = policy.check(config, client_id)
        if why is not None:
            raise RoundAborted(f"client {client_id} refuses the round: {why}")
        journal = MemoryJournal() if journal is None else journal
        # the two journals here first: a runtime Protocol check inspects the class each time
        # (about 40 us, on every restore of every message)
        if not isinstance(journal, (FileJournal, MemoryJournal)) and not isinstance(
            journal, Journal
        ):
            raise ConfigError(f"journal must be a Journal, got {type(journal).__name__}")
        self.config = config
        self.client_id = client_id
        self.policy = policy
        self._journal = journal
        self._identity = identity
        self._graph_seed: bytes | None = None  # commit-reveal: the seed, once computed
        # its neighbours' ids as a tuple (about 8 B each, not a frozenset's 48): a simulated
        # round holds n sessions at once
        self._neighbour_ids: tuple[int, ...] = (
            () if config.commit_reveal else tuple(self._graph.neighbours(client_id))
        )
        self._input: npt.NDArray[Any] | None = None
        self._state: ClientState = Fresh()

    @property
    def _graph(self) -> Graph:
        graph = self.config.graph
        return graph if self._graph_seed is None else graph.with_seed(self._graph_seed)

    def _fix_graph(self, seed: bytes) -> None:
        self._graph_seed = seed
        self._neighbour_ids = tuple(self._graph.neighbours(self.client_id))

    @property
    def _neighbours(self) -> frozenset[int]:
        return frozenset(self._neighbour_ids)

    @property
    def graph(self) -> Graph | None:
        """The round's graph as this client computed it; None while a commit-reveal round has
        not fixed its seed yet."""
        if self.config.commit_reveal and self._graph_seed is None:
            return None
        return self._graph

    def _key(self, stage: Stage) -> bytes:
        return bytes((stage.value,)) + self.client_id.to_bytes(4, "big") + self.config.round_id

    def committed(self, stage: Stage) -> bool:
        """Whether the journal holds this client's reply of ``stage`` in this round.

        Parameters:
            stage: The stage.

        Returns:
            True if the reply is recorded.
        """
        return self._journal.lookup(self._key(stage)) is not None

    def _replayed(self, stage: Stage, request: bytes) -> bytes | None:
        """None if the journal has no reply of ``stage``; the recorded reply if it answered
        this very request and kept its bytes (consistency, unmask); else the client refuses."""
        entry = self._journal.lookup(self._key(stage))
        if entry is None:
            return None
        if stage in _KEPT and entry[:_HASH] == _sha(request):
            return entry[_HASH:]
        self._abort(
            f"its journal shows it already answered {stage.name.lower()} in this round "
            "(a restored session never commits twice)"
        )

    def _commit(self, stage: Stage, request: bytes, reply: bytes, *, keep: bool) -> bytes:
        """Record the request's digest (and the reply if ``keep``) before the reply leaves;
        return it. A masked input is never re-sent, so only that it left is kept (hashing
        d words per round would cost about as much as masking them with a few neighbours)."""
        value = _sha(request) + (reply if keep else b"")
        try:
            self._journal.record(self._key(stage), value)
        except SecureAggError as exc:
            self._abort(f"its journal refused the record ({exc})")
        return reply

    def export_state(self) -> bytes:
        """This session's state as bytes, for :meth:`restore_state` in a later process.

        The bytes hold the client's private keys, shares and (until masked) its input: keep them
        where its secrets live. The identity key is not included. See docs/protocol.md.

        Returns:
            The saved state.
        """
        return encode_state(self.config, self.client_id, self._input, self._state, self._graph_seed)

    @classmethod
    def restore_state(
        cls,
        data: bytes,
        *,
        journal: Journal,
        identity: Ed25519PrivateKey | None = None,
        policy: ClientPolicy | None = None,
    ) -> ClientSession:
        """The session :meth:`export_state` saved, ready to go on.

        Parameters:
            data: The saved state.
            journal: Required: saved bytes can be older than what the client last sent, and only
                the journal that recorded its replies keeps it from committing twice.
            identity: The client's Ed25519 key (signed mode).
            policy: What the client accepts.

        Returns:
            The restored session.

        Raises:
            DecodeError: Malformed, truncated, corrupt or unknown-version bytes.
            ConfigError: ``identity`` does not fit the saved config.
            RoundAborted: ``policy`` refuses the saved config.
        """
        saved = decode_state(data)
        session = cls(
            saved.config, saved.client_id, identity=identity, policy=policy, journal=journal
        )
        if saved.graph_seed is not None:
            session._fix_graph(saved.graph_seed)
        session._input = saved.vector
        session._state = saved.state
        return session

    @property
    def stage(self) -> Stage | None:
        """The stage whose message the client sends next; None when done or aborted."""
        stage = STAGE_OF.get(type(self._state))
        if isinstance(self._state, Advertised) and self.config.commit_reveal:
            return Stage.REVEAL
        if stage is Stage.UNMASK and self.config.signed and isinstance(self._state, InputSent):
            return Stage.CONSISTENCY
        return stage

    @property
    def aborted(self) -> str | None:
        """Why the client refused, or None."""
        return self._state.reason if isinstance(self._state, Aborted) else None

    @property
    def masked_with(self) -> frozenset[int]:
        """The neighbours whose shares authenticated (U2 as this client sees it)."""
        state = self._state
        return state.u2 if isinstance(state, (InputSent, Signed)) else frozenset()

    def provide_input(self, vector: npt.NDArray[Any], *, copy: bool = True) -> None:
        """Set x_u: d integers in [0, 2^b). Kept as a private copy until it is masked.

        Parameters:
            vector: The client's input.
            copy: False hands ``vector`` itself to the session when it is already a
                writeable, contiguous array of ``element_dtype(b)`` (no copy of d words):
                the session masks it in place, so the caller must neither read nor change
                it afterwards. Any other array is copied.
        """
        cfg = self.config
        x = np.asarray(vector)
        if x.shape != (cfg.d,) or x.dtype.kind not in "ui":
            raise ConfigError(f"input must be {cfg.d} integers, got {x.dtype} {x.shape}")
        signed = x.dtype.kind == "i"
        if x.size and ((signed and int(x.min()) < 0) or int(x.max()) >> cfg.bits):
            raise ConfigError(f"input elements must lie in [0, 2^{cfg.bits})")
        dtype = element_dtype(cfg.bits)
        own = not copy and x.dtype == dtype and x.flags.c_contiguous and x.flags.writeable
        self._input = x if own else x.astype(dtype, copy=True)

    def advertise(self) -> bytes:
        """Stage 0: fresh key pairs, advertised (and signed in signed mode).

        Returns:
            The advertise message.
        """
        if not isinstance(self._state, Fresh):
            self._abort("advertise called twice")
        cfg, u = self.config, self.client_id
        c, s = KeyPair.generate(), KeyPair.generate()
        reveal = os.urandom(REVEAL_SIZE) if cfg.commit_reveal else b""
        commitment = graph_commitment(cfg.digest, u, reveal) if reveal else b""
        signature = b""
        if self._identity is not None and cfg.signed:
            payload = advertise_payload(cfg, u, c.public, s.public, commitment)
            signature = sign(self._identity, payload)
        self._state = Advertised(c, s, reveal)
        return encode(AdvertiseKeys(cfg.round_id, u, c.public, s.public, signature, commitment))

    def receive(self, data: bytes) -> bytes:
        """Handle one server message and return the reply.

        Parameters:
            data: The server's message.

        Returns:
            The reply to send.

        Raises:
            RoundAborted: Any deviation.
        """
        state = self._state
        if isinstance(state, Aborted):
            raise RoundAborted(f"client {self.client_id} already aborted: {state.reason}")
        try:
            msg = decode(data)
        except DecodeError as exc:
            self._abort(f"malformed server message ({exc})")
        if msg.round_id != self.config.round_id:
            self._abort("the message carries another round's id")
        if getattr(msg, "recipient", None) != self.client_id:
            self._abort(f"{type(msg).__name__} is not a server message addressed to this client")
        if self.config.commit_reveal:
            if isinstance(msg, SeedCommitments) and isinstance(state, Advertised):
                return self._on_commitments(state, msg, data)
            if isinstance(msg, KeysBroadcast) and isinstance(state, Revealed):
                self._on_reveals(state, msg, data)
                return self._on_keys(state, msg, keys_digest(data))
        elif isinstance(msg, KeysBroadcast) and isinstance(state, Advertised):
            if msg.reveals:
                self._abort("graph-seed reveals in a round without commit-reveal")
            return self._on_keys(state, msg, keys_digest(data))
        if isinstance(msg, SharesDelivery) and isinstance(state, SharesSent):
            return self._on_shares(state, msg, data)
        if self.config.signed:
            if isinstance(msg, ConsistencyRequest) and isinstance(state, InputSent):
                return self._on_consistency(state, msg, data)
            if isinstance(msg, UnmaskRequest) and isinstance(state, Signed):
                return self._on_unmask(state.holdings, state.u2, msg, state.survivors, data)
        elif isinstance(msg, UnmaskRequest) and isinstance(state, InputSent):
            return self._on_unmask(state.holdings, state.u2, msg, None, data)
        if isinstance(msg, UnmaskRequest) and isinstance(state, Done):
            self._abort("a second unmask request in the same round")
        self._abort(f"unexpected {type(msg).__name__} in state {type(state).__name__}")

    def _abort(self, reason: str) -> NoReturn:
        self._state = Aborted(reason)
        self._input = None
        raise RoundAborted(f"client {self.client_id} refused: {reason}")

    def _on_commitments(self, state: Advertised, msg: SeedCommitments, request: bytes) -> bytes:
        """Check the committed list holds this client's own commitment, keep its digest, and
        reveal r_u (journaled: the same list gets the same bytes, another list a refusal)."""
        cfg, u = self.config, self.client_id
        listed = dict(msg.commitments)
        if listed.get(u) != graph_commitment(cfg.digest, u, state.reveal):
            self._abort("its own graph-seed commitment is missing from the committed list")
        if listed.keys() - set(cfg.graph.ids):
            self._abort("the committed list names clients that are not in this round")
        if len(listed) <= cfg.threshold:
            self._abort(f"only {len(listed)} clients committed (threshold {cfg.threshold})")
        reply = self._replayed(Stage.REVEAL, request)
        if reply is None:
            reply = encode(SeedReveal(cfg.round_id, u, state.reveal))
            self._commit(Stage.REVEAL, request, reply, keep=True)
        raw = pairs_tail(request, len(msg.commitments), COMMITMENT_SIZE)
        digest = commitments_digest(cfg.digest, raw)
        self._state = Revealed(state.c, state.s, digest)
        return reply

    def _on_reveals(self, state: Revealed, msg: KeysBroadcast, data: bytes) -> None:
        """Check every reveal against the committed list (exactly that list, nothing more or
        less), then fix the graph from the seed they give."""
        cfg = self.config
        opened = opened_commitments(cfg.digest, msg.reveals)
        if commitments_digest(cfg.digest, opened) != state.commitments:
            self._abort(
                "the graph-seed reveals do not open exactly the committed list it was shown"
            )
        self._fix_graph(graph_seed(cfg.digest, pairs_tail(data, len(msg.reveals), REVEAL_SIZE)))

    def _on_keys(self, state: Advertised | Revealed, msg: KeysBroadcast, digest: bytes) -> bytes:
        cfg, u = self.config, self.client_id
        entries = {e.client: e for e in msg.entries}
        own = entries.get(u)
        if own is None or (own.c_pk, own.s_pk) != (state.c.public, state.s.public):
            self._abort("its own keys came back altered or missing")
        if not set(entries) - {u} <= self._neighbours:
            self._abort("keys from clients that are not its neighbours")
        keys = [k for e in entries.values() for k in (e.c_pk, e.s_pk)]
        if len(set(keys)) != len(keys):
            self._abort("two advertised keys are equal")
        revealed = dict(msg.reveals)
        if cfg.commit_reveal and not entries.keys() <= revealed.keys():
            self._abort("keys from clients that are not on the committed list")
        if cfg.signed:
            for v, e in entries.items():
                commitment = graph_commitment(cfg.digest, v, revealed[v]) if revealed else b""
                payload = advertise_payload(cfg, v, e.c_pk, e.s_pk, commitment)
                if not verify(cfg.identity_keys[v], e.signature, payload):
                    self._abort(f"bad signature on the keys of client {v}")
        u1 = sorted(set(entries) - {u})
        if len(u1) < cfg.threshold:
            self._abort(f"only {len(u1)} neighbours advertised keys (threshold {cfg.threshold})")
        seed = os.urandom(_SEED_SIZE)
        holders = sorted([*u1, u])
        s_shares = split(state.s.private, cfg.threshold, holders)
        b_shares = split(seed, cfg.threshold, holders)
        enc_keys: list[tuple[int, bytes]] = []
        ciphertexts = []
        for v in u1:
            try:
                shared = state.c.agree(entries[v].c_pk)
            except InvalidKeyError:
                self._abort(f"client {v} advertised an invalid key")
            key = derive_key(shared, label=LABEL_SHARE_ENC, id_a=u, id_b=v, round_id=cfg.digest)
            enc_keys.append((v, key))
            bundle = s_shares[v] + b_shares[v]
            ciphertexts.append((v, seal(key, bundle, round_id=cfg.digest, sender=u, recipient=v)))
        s_pks = Records([(v, entries[v].s_pk) for v in u1], _KEY_SIZE)
        self._state = SharesSent(
            state.s, Records(enc_keys, _KEY_SIZE), s_pks, seed, (s_shares[u], b_shares[u])
        )
        commitment = seed_commitment(cfg.round_id, u, seed)
        return encode(ShareKeys(cfg.round_id, u, commitment, digest, tuple(ciphertexts)))

    def _on_shares(self, state: SharesSent, msg: SharesDelivery, request: bytes) -> bytes:
        cfg, u = self.config, self.client_id
        self._replayed(Stage.MASKED_INPUT, request)  # its input is gone: it can only refuse
        rows = [(u, state.own[0] + state.own[1])]
        failed = []
        for v, ct in msg.ciphertexts:
            key = state.enc_keys.get(v)
            if key is None:
                self._abort(f"shares from client {v}, which is not a neighbour in U1")
            try:
                bundle = open_sealed(key, ct, round_id=cfg.digest, sender=v, recipient=u)
            except AuthenticationError:
                failed.append(v)  # replayed, re-addressed or altered: v counts as dropped
                continue
            if len(bundle) != 2 * SHARE_SIZE:
                failed.append(v)
                continue
            rows.append((v, bundle))  # share of s_sk_v || share of b_v, kept packed
        holdings = Holdings(rows, u)
        u2 = holdings.u2
        if len(u2) < cfg.threshold:
            self._abort(f"only {len(u2)} neighbours' shares arrived (threshold {cfg.threshold})")
        y = self._input
        if y is None:
            self._abort("no input was provided before the masked-input stage")
        add: list[bytes] = [state.seed]
        subtract: list[bytes] = []
        for v in sorted(u2):
            try:
                shared = state.s.agree(state.s_pks[v])
            except InvalidKeyError:
                self._abort(f"client {v} advertised an invalid key")
            seed = derive_key(shared, label=LABEL_MASK, id_a=u, id_b=v, round_id=cfg.digest)
            (add if u < v else subtract).append(seed)
        MaskBuffer(cfg.d, cfg.bits).apply(y, add=add, subtract=subtract)
        self._input = None
        reply = encode(MaskedInput(cfg.round_id, u, tuple(failed), y, cfg.bits))
        self._commit(Stage.MASKED_INPUT, request, reply, keep=False)
        self._state = InputSent(holdings)
        return reply

    def _check_lists(
        self, u2: frozenset[int], survivors: tuple[int, ...], dropped: tuple[int, ...]
    ) -> tuple[frozenset[int], frozenset[int]]:
        """The checks before any share leaves: returns (neighbours in U3, neighbours in D)."""
        alive, gone = frozenset(survivors), frozenset(dropped)
        neighbours = self._neighbours
        if alive & gone:
            self._abort("the survivor and dropout lists overlap")
        if not all(v in self.config.graph for v in alive | gone):
            self._abort("the lists name clients that are not in this round")
        if self.client_id not in alive:
            self._abort("it is not in the survivor list it was sent")
        if not (alive | gone) & neighbours <= u2:
            self._abort("the lists name neighbours whose shares it never received")
        alive_nb = alive & neighbours
        if len(alive_nb) < self.config.threshold:
            self._abort(
                f"only {len(alive_nb)} of its neighbours survive (threshold "
                f"{self.config.threshold})"
            )
        return alive_nb, gone & neighbours

    def _on_consistency(self, state: InputSent, msg: ConsistencyRequest, request: bytes) -> bytes:
        self._check_lists(state.u2, msg.survivors, ())
        reply = self._replayed(Stage.CONSISTENCY, request)
        if reply is None:
            assert self._identity is not None  # guaranteed by __init__ in signed mode
            signature = sign(self._identity, survivors_payload(self.config, msg.survivors))
            reply = encode(ConsistencySignature(self.config.round_id, self.client_id, signature))
            self._commit(Stage.CONSISTENCY, request, reply, keep=True)
        self._state = Signed(state.holdings, msg.survivors)
        return reply

    def _on_unmask(
        self,
        holdings: Holdings,
        u2: frozenset[int],
        msg: UnmaskRequest,
        signed_survivors: tuple[int, ...] | None,
        request: bytes,
    ) -> bytes:
        cfg, u = self.config, self.client_id
        alive_nb, gone_nb = self._check_lists(u2, msg.survivors, msg.dropped)
        if signed_survivors is not None:
            if msg.survivors != signed_survivors:
                self._abort("the survivor list differs from the one it signed")
            payload = survivors_payload(cfg, msg.survivors)
            alive = frozenset(msg.survivors)
            for v, sig in msg.signatures:
                if v not in alive or not verify(cfg.identity_keys[v], sig, payload):
                    self._abort(f"bad consistency signature from client {v}")
            if len(msg.signatures) < cfg.consistency_quorum:
                self._abort(
                    f"only {len(msg.signatures)} clients signed the survivor list "
                    f"(quorum {cfg.consistency_quorum})"
                )
        elif msg.signatures:
            self._abort("signatures in an unsigned round")
        reply = self._replayed(Stage.UNMASK, request)
        if reply is None:
            seed_shares = tuple((v, holdings[v][1]) for v in sorted(alive_nb | {u}))
            key_shares = tuple((v, holdings[v][0]) for v in sorted(gone_nb))
            reply = encode(UnmaskResponse(cfg.round_id, u, seed_shares, key_shares))
            self._commit(Stage.UNMASK, request, reply, keep=True)
        self._state = Done()
        return reply

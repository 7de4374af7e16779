"""SecureAggClient: one client's round of secure aggregation over the caller's own transport."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from secureagg._exceptions import ConfigError, DecodeError, ProtocolError, RoundAborted
from secureagg.fl._distributed import DistributedEncoder, refuse_hidden
from secureagg.fl._encoding import UpdateEncoder
from secureagg.privacy import LocalUpdate
from secureagg.protocol import ClientPolicy, ClientSession, RoundConfig, Stage

__all__ = ["SecureAggClient"]


def _as_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{what} must be bytes, not {type(data).__name__}")
    return bytes(data)


class SecureAggClient:
    """The client's side of one round, bytes in and bytes out; the transport is the caller's.

    1. :meth:`join` with the server's round config bytes -> the advertise message;
    2. :meth:`receive` with each server message -> the reply to send back (one per stage;
       a SecAgg+ round has one more, the reveal of the client's share of the graph seed).
       The reply to the shares message is the masked update: give the update to
       :meth:`provide_update` before it (or as ``receive(data, update=...)``).

    The update is encoded and handed to the protocol session inside this object; the only
    bytes that leave are the session's messages, so the update leaves this process only
    masked. Timeouts are the caller's: a client that stops calling simply drops out.

    The client takes part only in a round whose config carries its encoder's settings, bit
    width and length (a :class:`ClientPolicy`; pass ``policy`` to set one yourself) and a
    threshold above half its neighbourhood, unless ``allow_minority_threshold``.

    Hidden sampling (``DistributedDP(sampling="hidden")``) is refused (ConfigError): this
    client flips no sampling coin; hidden sampling runs only in ``run_federated``.

    Errors: DecodeError for a round config that is not one; ConfigError when the config
    does not fit this client (another model, other settings, not a member, untrusted
    identity keys) or no update was given in time; RoundAborted, after which the client
    stays aborted and reveals nothing more, when a server message is malformed or deviates.

    Parameters:
        encoder: The federation's public encoding, the same as the server's
            (:meth:`SecureAggregator.client_encoder`).
        client_id: This client's id in the round.
        identity: The client's Ed25519 key (signed mode).
        trusted_keys: Client id -> raw Ed25519 public key; when given, the client joins only
            signed rounds whose identity keys are exactly these.
        allow_minority_threshold: Accept a threshold at or below half the neighbourhood (for
            simulations of weaker settings).
        allow_server_graph_seed: Accept a Harary graph whose seed the server chose
            (``SecureAggConfig(server_graph_seed=True)``) instead of the clients'
            commit-reveal.
        bound: The values this client's update depends on that the server binds into the
            round config (``SecureAggServer(bound=...)``), as this client knows them: above
            all the digest of the global model and train settings it trained from. The
            client joins only a round whose config carries exactly these.
        **session_options: ``policy``, ``journal`` (a :class:`~secureagg.protocol.Journal`
            that records the client's committing replies) and other options of
            :class:`ClientSession`, passed unchanged.
    """

    def __init__(
        self,
        encoder: UpdateEncoder | DistributedEncoder,
        client_id: int,
        *,
        identity: Ed25519PrivateKey | None = None,
        trusted_keys: Mapping[int, bytes] | None = None,
        allow_minority_threshold: bool = False,
        allow_server_graph_seed: bool = False,
        bound: Mapping[str, int | float | str | bool] | None = None,
        **session_options: Any,
    ) -> None:
        if not isinstance(encoder, (UpdateEncoder, DistributedEncoder)):
            raise ConfigError(
                f"encoder must be an UpdateEncoder or a DistributedEncoder, got "
                f"{type(encoder).__name__}"
            )
        if isinstance(encoder, DistributedEncoder):
            refuse_hidden(encoder, "SecureAggClient")
        pins = dict(bound or {})
        if "policy" in session_options and pins:
            policy = session_options["policy"]
            if not isinstance(policy, ClientPolicy):
                raise ConfigError(f"policy must be a ClientPolicy, got {type(policy).__name__}")
            session_options["policy"] = dataclasses.replace(
                policy, encoding={**policy.encoding, **pins}
            )
        session_options.setdefault(
            "policy",
            ClientPolicy(
                encoding={**encoder.public_settings(), **pins},
                bits=encoder.bits,
                d=encoder.length,
                # distributed DP: never fewer than n_min honest shares of noise in the sum
                min_threshold=encoder.floor if isinstance(encoder, DistributedEncoder) else 2,
                allow_minority_threshold=allow_minority_threshold,
                allow_server_graph_seed=allow_server_graph_seed,
            ),
        )
        self.encoder = encoder
        self.client_id = client_id
        self._identity = identity
        self._trusted = None if trusted_keys is None else dict(trusted_keys)
        self._options = session_options
        self._session: ClientSession | None = None
        self._encoded: npt.NDArray[Any] | None = None  # until the session has it
        self._pending: LocalUpdate | None = (
            None  # distributed DP: encoded once the round id is known
        )
        self._has_update = False

    @property
    def session(self) -> ClientSession | None:
        """The protocol session, once :meth:`join` has run (e.g. for ``export_state``)."""
        return self._session

    @property
    def stage(self) -> Stage | None:
        """The stage whose message the client sends next; None when done or aborted."""
        return Stage.ADVERTISE if self._session is None else self._session.stage

    @property
    def needs_update(self) -> bool:
        """True while the next server message asks for the masked update and none is given."""
        return self.stage is Stage.MASKED_INPUT and not self._has_update

    @property
    def aborted(self) -> str | None:
        """Why the client refused, or None."""
        return None if self._session is None else self._session.aborted

    def join(self, config: bytes) -> bytes:
        """Check the server's round config and return this client's advertise message.

        Parameters:
            config: The round config bytes the server sent.

        Returns:
            The advertise message to send to the server.
        """
        if self._session is not None:
            raise ProtocolError("join called twice: one SecureAggClient serves one round")
        cfg = RoundConfig.from_bytes(_as_bytes(config, "the round config"))
        if (cfg.d, cfg.bits) != (self.encoder.length, self.encoder.bits):
            raise ConfigError(
                f"the server's round has d={cfg.d}, bits={cfg.bits}; this client encodes "
                f"d={self.encoder.length}, bits={self.encoder.bits}: models or settings differ"
            )
        if self._trusted is not None:
            keys = {u: cfg.identity_keys.get(u) for u in cfg.graph.ids}
            if not cfg.signed or any(self._trusted.get(u) != k for u, k in keys.items()):
                raise ConfigError("the round is not signed by the identity keys this client trusts")
        session = ClientSession(cfg, self.client_id, identity=self._identity, **self._options)
        self._session = session
        if self._pending is not None and isinstance(self.encoder, DistributedEncoder):
            self._encoded = self.encoder.encode(self._pending, cfg.round_id, client=self.client_id)
            self._pending = None
        if self._encoded is not None:
            session.provide_input(self._encoded)
            self._encoded = None
        return session.advertise()

    def provide_update(self, update: LocalUpdate, rng: np.random.Generator | None = None) -> None:
        """Encode ``update`` for this round.

        Parameters:
            update: The client's round update.
            rng: Drives the stochastic rounding (default: seeded by the OS).
        """
        if self._session is not None and self._session.aborted is not None:
            raise RoundAborted(f"client {self.client_id} aborted: {self._session.aborted}")
        if self._session is not None and self._session.stage not in (
            Stage.ADVERTISE,
            Stage.REVEAL,
            Stage.SHARE_KEYS,
            Stage.MASKED_INPUT,
        ):
            raise ProtocolError("the masked update of this round has already been sent")
        if isinstance(self.encoder, DistributedEncoder):  # rng unused: noise from the OS
            if self._session is None:  # the rotation needs the round id: wait for join
                self._pending = update
                self._has_update = True
                return
            encoded = self.encoder.encode(
                update, self._session.config.round_id, client=self.client_id
            )
        else:
            encoded = self.encoder.encode(update, rng)
        if self._session is None:
            self._encoded = encoded
        else:
            self._session.provide_input(encoded)  # keeps its own copy until it masks it
        self._has_update = True

    def receive(self, data: bytes, *, update: LocalUpdate | None = None) -> bytes:
        """The reply to one server message.

        Parameters:
            data: The server's message for this stage.
            update: The round update, if not given to :meth:`provide_update` before.

        Returns:
            The reply to send back.
        """
        session = self._session
        if session is None:
            raise ProtocolError("receive before join: the round config comes first")
        message = _as_bytes(data, "a server message")
        if update is not None:
            self.provide_update(update)
        if session.stage is Stage.MASKED_INPUT and not self._has_update:
            raise ConfigError("the server asks for the masked update: call provide_update first")
        return session.receive(message)

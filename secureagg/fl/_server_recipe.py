"""SecureAggServer: the server's round of secure aggregation over the caller's own transport."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from secureagg._exceptions import ConfigError, DecodeError, RoundAborted
from secureagg.fl._aggregator import Aggregate, SecureAggregator
from secureagg.fl._distributed import refuse_hidden
from secureagg.protocol import (
    Cost,
    Rejection,
    RoundConfig,
    RoundResult,
    ServerSession,
    Stage,
    new_round_id,
    plan_round,
)

__all__ = ["SecureAggServer"]


class SecureAggServer:
    """The server's side of one round, bytes in and bytes out; the transport is the caller's.

    1. send :attr:`config_bytes` to every client in ``clients``;
    2. pass each client message to :meth:`receive` with the id the transport knows it by;
    3. when every client in :attr:`waiting_for` has answered or the stage's deadline has
       passed (the deadline is the caller's to keep), :meth:`close_stage` returns the
       message for each client still in the round; clients that said nothing count as
       dropped. Repeat 2-3 until :attr:`stage` is None, then :meth:`result`.

    The server only ever holds masked inputs and the shares it needs to remove the masks
    of the sum: :meth:`result` is the survivors' average, nothing per client.

    An aggregator under hidden sampling (``DistributedDP(sampling="hidden")``) is refused
    (ConfigError): no client of a transport round flips a sampling coin here; hidden
    sampling runs only in ``run_federated``.

    Parameters:
        aggregator: Supplies the encoding and protocol settings (its ``config``) and
            decodes the sum.
        clients: The ids of the clients invited to the round.
        round_counter: Goes into the fresh round id (``new_round_id``).
        identity_keys: Client id -> raw Ed25519 public key; required in signed mode.
        bound: Values of this round that shape what clients send and that the library never
            sees, bound into the round config and its digest (name -> int, float, str or
            bool): above all a digest of the global model and train settings your transport
            sends. A client that passes the same ``bound`` joins; one given another model
            refuses, so clients trained from different models (a server that sends lr 0 to
            all but one) are never summed together.
        **session_options: Passed to :class:`ServerSession` unchanged (e.g.
            ``transport_dedupes``).
    """

    def __init__(
        self,
        aggregator: SecureAggregator,
        clients: Collection[int],
        *,
        round_counter: int = 0,
        identity_keys: Mapping[int, bytes] | None = None,
        bound: Mapping[str, int | float | str | bool] | None = None,
        **session_options: Any,
    ) -> None:
        ids = sorted(set(clients))
        settings_public = aggregator.public_settings()
        clash = sorted(set(bound or {}) & set(settings_public))
        if clash:
            raise ConfigError(f"bound names {clash} are the encoder's own settings")
        if len(ids) < 2:
            raise ConfigError("a round needs at least 2 clients")
        if len(ids) > aggregator.max_clients:
            raise ConfigError(f"{len(ids)} clients exceed max_clients={aggregator.max_clients}")
        dist = aggregator.distributed
        refuse_hidden(dist, "SecureAggServer")
        if dist is not None and len(ids) <= dist.floor:
            raise ConfigError(
                f"{len(ids)} clients cannot meet distributed DP's threshold floor {dist.floor}"
            )
        if dist is not None and dist.weights is not None:
            unweighted = [u for u in ids if u not in dist.weights]
            if unweighted:
                raise ConfigError(f"clients {unweighted} have no public weight in this run")
        settings = aggregator.config
        if settings.signed and identity_keys is None:
            raise ConfigError("signed mode needs every client's identity public key")
        round_id = new_round_id(round_counter)
        plan = plan_round(
            len(ids),
            degree=settings.degree,
            threshold=aggregator.round_threshold(len(ids), settings.degree),
            allow_minority_threshold=settings.allow_minority_threshold,
        )
        server_seed = settings.server_graph_seed and not plan.complete
        self.config = RoundConfig(
            server_graph_seed=server_seed,
            round_id=round_id,
            bits=aggregator.bits,
            d=aggregator.length,
            threshold=plan.threshold,
            graph=plan.graph(ids, round_id if server_seed else None),
            signed=settings.signed,
            identity_keys=dict(identity_keys or {}),
            encoding={**settings_public, **(bound or {})},
        )
        self.aggregator = aggregator
        self._session = ServerSession(self.config, **session_options)
        self._addressed: frozenset[int] = frozenset(ids)
        self._heard: set[int] = set()

    @property
    def config_bytes(self) -> bytes:
        """The round config every client needs to :meth:`SecureAggClient.join`."""
        return self.config.to_bytes()

    @property
    def stage(self) -> Stage | None:
        """The stage being collected; None when finished."""
        return self._session.stage

    @property
    def waiting_for(self) -> frozenset[int]:
        """Clients asked for a message in this stage that have sent nothing yet."""
        return self._addressed - self._heard if self.stage is not None else frozenset()

    @property
    def dropouts(self) -> dict[int, Stage]:
        """Clients that dropped out (silent, refused or rejected) and the stage they missed."""
        return dict(self._session.dropouts)

    @property
    def rejected(self) -> list[Rejection]:
        """Every client message the server refused, with the reason."""
        return list(self._session.rejected)

    def receive(self, client_id: int, data: bytes) -> None:
        """Take one message from ``client_id``; a bad message drops its sender, never raises.

        Parameters:
            client_id: The sender, as the transport knows it.
            data: The message.

        Raises:
            DecodeError: ``data`` is not bytes at all (a caller's mistake).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DecodeError(f"a client message must be bytes, not {type(data).__name__}")
        self._session.receive(bytes(data), sender=client_id)
        if client_id in self._addressed:
            self._heard.add(client_id)

    def close_stage(self) -> dict[int, bytes]:
        """End the current stage.

        Returns:
            Client id -> the bytes to send it next (empty at the end).

        Raises:
            RoundAborted: Too few clients remain.
        """
        out = self._session.close_stage()
        self._addressed = frozenset(out)
        self._heard = set()
        return out

    def result(self) -> Aggregate:
        """The survivors' average update, once the last stage is closed.

        Returns:
            The average update, shaped like the model, and how it was made.

        Raises:
            RoundAborted: The round is not finished, or it aborted.
        """
        if self.stage is not None:
            raise RoundAborted(f"the round is still collecting {self.stage.name}")
        res = self._session.result
        # under distributed DP the public rotation seed of a round is its id
        agg = self.aggregator.decode(res.total, res.survivors, self.config.round_id)
        agg.protocol = RoundResult(
            total=res.total,
            survivors=res.survivors,
            client_cost={},
            server_cost=Cost(),
            dropouts=self.dropouts,
            rejected=self.rejected,
        )
        return agg

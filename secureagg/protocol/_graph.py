"""The neighbour graph: complete (SecAgg) or a Harary graph over a random permutation (SecAgg+)."""

from __future__ import annotations

import functools
import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable

from secureagg._exceptions import ConfigError

__all__ = ["MAX_CLIENT_ID", "Graph", "check_client_id"]

MAX_CLIENT_ID = 2**32 - 1
_MEMO = 16_384
"""Neighbourhoods a Harary graph keeps worked out, the oldest dropped first: every one in a
round of up to 16,384 clients, and bounded memory above that (a neighbourhood of 46 is a
2.2 KB frozenset: 220 MB at 100,000 clients), where work done in ring order still finds
most of them kept."""
_PERMUTATION_LABEL = b"secureagg/v1/harary-permutation"


def check_client_id(value: object) -> int:
    """``value`` if it is a valid client id (an int in [1, 2^32-1]), else ConfigError."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_CLIENT_ID:
        raise ConfigError(f"client ids are ints in [1, 2^32-1], got {value!r}")
    return value


class Graph:
    """Who shares keys and masks with whom; undirected, no self-loops.

    Build one with :meth:`complete` or :meth:`harary`; both sides of a round must use the
    same graph (it is part of the round config).

    Parameters:
        ids: The client ids.
        degree: Neighbours per client.
        ring: A Harary graph's ring order (None: the complete graph, or a Harary graph
            whose seed is not known yet); neighbours are worked out from it when asked.
        rng_seed: The seed that ordered a Harary graph's ring (None for the complete graph
            and for a Harary graph whose seed comes later, see :attr:`needs_seed`).
    """

    __slots__ = ("_all", "_memo", "_ring", "degree", "ids", "rng_seed")

    def __init__(
        self,
        ids: tuple[int, ...],
        degree: int,
        ring: _Ring | None,
        rng_seed: bytes | None,
    ) -> None:
        self.ids = ids
        self.degree = degree
        self.rng_seed = rng_seed
        self._all = frozenset(ids)
        self._ring = ring
        self._memo: OrderedDict[int, frozenset[int]] = OrderedDict()

    @staticmethod
    def _check_ids(ids: Iterable[int]) -> tuple[int, ...]:
        if not isinstance(ids, Iterable) or isinstance(ids, (str, bytes)):
            raise ConfigError("client ids must be an iterable of ints")
        out = tuple(sorted(check_client_id(i) for i in ids))
        if len(out) < 2:
            raise ConfigError("a round needs at least 2 clients")
        if len(set(out)) != len(out):
            raise ConfigError("client ids must be distinct")
        return out

    @classmethod
    def complete(cls, ids: Iterable[int]) -> Graph:
        """Every client is a neighbour of every other (classic SecAgg).

        Parameters:
            ids: The client ids.

        Returns:
            The complete graph.
        """
        sorted_ids = cls._check_ids(ids)
        return cls(sorted_ids, len(sorted_ids) - 1, None, None)

    @classmethod
    def harary(cls, ids: Iterable[int], degree: int, rng_seed: bytes | None = None) -> Graph:
        """The Harary graph H(k, n), even k, over a permutation of ``ids`` fixed by ``rng_seed``.

        The clients sit on a ring in the order of SHA-256(label || seed || id); each is joined to
        the k/2 nearest on either side. An even degree of n-1 or more gives the complete graph.

        Parameters:
            ids: The client ids.
            degree: k, even.
            rng_seed: At least 16 bytes; None leaves the ring order to the round's
                commit-reveal (:attr:`needs_seed`, :meth:`with_seed`; docs/protocol.md,
                "The graph seed").

        Returns:
            The graph.

        Raises:
            ConfigError: An odd degree or a short seed.
        """
        sorted_ids = cls._check_ids(ids)
        n = len(sorted_ids)
        if not isinstance(degree, int) or isinstance(degree, bool) or degree < 2 or degree % 2:
            raise ConfigError(f"a Harary graph needs an even degree >= 2, got {degree!r}")
        if rng_seed is not None and (not isinstance(rng_seed, bytes) or len(rng_seed) < 16):
            raise ConfigError("rng_seed must be at least 16 bytes")
        if degree >= n - 1:
            return cls.complete(sorted_ids)
        if rng_seed is None:
            return cls(sorted_ids, degree, None, None)
        return cls(sorted_ids, degree, _ring(sorted_ids, degree, rng_seed), rng_seed)

    def with_seed(self, rng_seed: bytes) -> Graph:
        """This Harary graph with its ring ordered by ``rng_seed`` (see :attr:`needs_seed`).

        Parameters:
            rng_seed: At least 16 bytes.

        Returns:
            The seeded graph.

        Raises:
            ConfigError: The graph is complete or already seeded.
        """
        if not self.needs_seed:
            raise ConfigError(f"{self!r} has no seed to fix")
        if not isinstance(rng_seed, bytes) or len(rng_seed) < 16:
            raise ConfigError("rng_seed must be at least 16 bytes")
        # ids and degree were checked when this graph was built
        return Graph(self.ids, self.degree, _ring(self.ids, self.degree, rng_seed), rng_seed)

    @property
    def needs_seed(self) -> bool:
        """True for a Harary graph whose ring order is not fixed yet (commit-reveal)."""
        return self._ring is None and self.degree < len(self.ids) - 1

    @property
    def is_complete(self) -> bool:
        """True for the complete graph."""
        return self._ring is None and not self.needs_seed

    def __contains__(self, client: object) -> bool:
        return client in self._all

    def __len__(self) -> int:
        return len(self.ids)

    def in_ring_order(self, members: Iterable[int]) -> list[int]:
        """``members`` in the ring's order (sorted ids for the complete graph, or a Harary
        graph whose seed is not fixed yet).

        Neighbours sit next to each other on the ring, so work done client by client in
        this order (the server's broadcasts and share deliveries) finds each neighbourhood's
        data still in cache.

        Parameters:
            members: Client ids of this graph.

        Returns:
            Them, ordered.
        """
        if self._ring is None:
            return sorted(members)
        return sorted(members, key=self._ring[1].__getitem__)

    def neighbours(self, client: int) -> frozenset[int]:
        """The neighbours of ``client`` (never itself).

        Parameters:
            client: A client id.

        Returns:
            Its neighbours.

        Raises:
            ConfigError: An unknown id.
        """
        if client not in self._all:
            raise ConfigError(f"client {client!r} is not in this round's graph")
        if self.needs_seed:
            raise ConfigError("the ring order of this Harary graph is not fixed yet")
        if self._ring is None:
            return self._all - {client}
        found = self._memo.get(client)
        if found is None:
            order, position = self._ring
            n, half, pos = len(order), self.degree // 2, position[client]
            found = frozenset(order[(pos + step) % n] for step in range(-half, half + 1) if step)
            if len(self._memo) >= _MEMO:
                self._memo.popitem(last=False)
            self._memo[client] = found
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return (self.ids, self.degree, self.rng_seed) == (other.ids, other.degree, other.rng_seed)

    def __hash__(self) -> int:
        return hash((self.ids, self.degree, self.rng_seed))

    def __repr__(self) -> str:
        kind = "complete" if self.is_complete else f"harary(degree={self.degree})"
        if self.needs_seed:
            kind = f"harary(degree={self.degree}, seed to come)"
        return f"Graph({kind}, n={len(self.ids)})"


_Ring = tuple[tuple[int, ...], dict[int, int]]
"""A Harary graph's ring: the ids in ring order, and each id's position on it."""


@functools.lru_cache(maxsize=4)
def _ring(ids: tuple[int, ...], degree: int, seed: bytes) -> _Ring:
    """The ring of H(degree, n) ordered by ``seed``: n hashes and a sort, O(n log n); a
    client's neighbours are read off it when asked (building every neighbourhood up front
    cost O(n k) per message on a client that needs one). Cached: in a simulated round every
    client rebuilds the same ring from the same revealed seed. Callers must not change it."""
    prefix = hashlib.sha256(_PERMUTATION_LABEL + seed)
    pack = struct.Struct(">I").pack

    def key(i: int) -> bytes:
        h = prefix.copy()
        h.update(pack(i))
        return h.digest()

    order = tuple(sorted(ids, key=key))
    return order, {u: pos for pos, u in enumerate(order)}

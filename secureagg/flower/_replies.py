"""Reading a node's reply to a protocol stage: its payload, or why it is refused."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Message

from secureagg._exceptions import SecureAggError
from secureagg.flower._records import payload, record_of

__all__ = ["Declined", "cut", "read_reply"]


class Declined(Exception):
    """A reply that carries no usable payload; the message says why (a node chose parts of it)."""


def cut(text: str, limit: int = 1000) -> str:
    """``text``, or its start and end if it is longer than ``limit`` (a node chooses it)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} [...] {text[-limit // 2 :]}"


def read_reply(
    msg: Message,
    stage: str,
    *,
    expected: str,
    size: int | None = None,
    check: Callable[[bytes], object] | None = None,
) -> bytes:
    """The payload of ``msg``, a node's reply at ``stage``.

    Parameters:
        msg: The node's reply.
        stage: The stage tag the reply must carry.
        expected: What the reply should be, for the refusal ("a unmask message").
        size: The exact payload length, if the stage fixes one.
        check: Called on the payload; a ValueError or TypeError it raises refuses the reply.

    Returns:
        The payload bytes.

    Raises:
        Declined: An error reply, no secureagg record, a node that declined, another stage,
            a missing or wrong-sized payload, or one that does not read.
    """
    if msg.has_error():
        raise Declined(f"error reply: {cut(str(msg.error.reason))}")
    try:
        rec = record_of(msg)
        if rec is None:
            raise Declined("reply without secureagg's record")
        if "declined" in rec:
            raise Declined(str(rec["declined"])[:200])
        data = payload(msg, rec)
        if (
            rec.get("stage") != stage
            or not isinstance(data, bytes)
            or (size is not None and len(data) != size)
        ):
            raise Declined(f"reply is not {expected}")
        if check is not None:
            check(data)
    except (SecureAggError, TypeError, ValueError, KeyError) as exc:
        raise Declined(f"unreadable reply ({type(exc).__name__})") from exc
    return data

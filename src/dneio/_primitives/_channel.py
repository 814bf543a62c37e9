"""``Channel``: a bounded first-in, first-out line of items between tasks."""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Any, Generic, TypeVar

from .._core._batch import resumptions_held
from .._core._continuation import AnsweringContinuation
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._errors import ClosedError, EndOfChannel
from ._first_of import same_first_of
from ._waiters import Waiters, resume_unless_cancelled, wake_all

T = TypeVar("T")


class Channel(Generic[T]):
    """A buffer of at most ``capacity`` items, for any number of senders and receivers.

    Items come out in the order they went in.  A sender finding the buffer
    full waits in line; as receivers make room, waiting senders' items go
    in, in the order the senders arrived.  A receiver finding the buffer
    empty waits in line for the next item.  ``capacity=0`` makes every
    send wait until a receiver takes its item.

    Cancellation (trio, asyncio): a sender cancelled while it waits has not
    sent its item (``send`` raised, the item stays with the sender); once
    ``send`` returns, the item is in the channel.  A receiver cancelled
    while it waits takes nothing; the item goes to the next receiver.

    :meth:`close` ends the channel: later sends raise :class:`ClosedError`,
    and so do sends still waiting (their items were not sent); receivers
    get the items already in the buffer, then :class:`EndOfChannel`.
    ``async for item in channel`` receives until then.
    """

    __slots__ = ("_buffer", "_capacity", "_closed", "_receivers", "_senders")

    def __init__(self, capacity: int) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            raise ValueError(f"capacity must be an int >= 0, not {capacity!r}")
        self._capacity = capacity
        self._buffer: deque[T] = deque()
        self._senders: Waiters[T] = Waiters()
        self._receivers: Waiters[None] = Waiters()
        self._closed = False

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Channel{state} {len(self._buffer)}/{self._capacity}>"

    @property
    def capacity(self) -> int:
        """The most items the buffer holds."""
        return self._capacity

    def __len__(self) -> int:
        """Items in the buffer (not counting those of waiting senders)."""
        return len(self._buffer)

    # -- sending ------------------------------------------------------------------
    async def send(self, item: T) -> None:
        """Put ``item`` in the channel, waiting for room if it is full."""
        if (
            len(self._buffer) < self._capacity
            and not self._receivers
            and not self._senders
            and not self._closed
        ):
            self._buffer.append(item)
            return
        await shift(partial(self.send_cb, item))

    @ki_sensitive
    def send_cb(self, item: T, k: AnsweringContinuation[Any, None, Any]) -> None:
        """Put ``item`` in the channel; resume ``k`` once it is in."""
        if self._closed:
            k.throw(ClosedError("send() on a closed Channel"))
            return
        while self._receivers:
            receiver = self._receivers.pop()
            if receiver is None:
                break
            if same_first_of(receiver[0], k):
                # The task's own receive, raced against this send: the send
                # wins, as when the receive meets the send (see receive_cb),
                # and the item waits in the channel for the next receiver.
                self._buffer.append(item)
                k.send(None)
                return
            # The buffer is empty whenever a receiver waits: hand over
            # directly.  Both are claimed before either runs, so neither
            # can be cancelled by the other's code in between.  A receiver
            # cancelled from another thread meanwhile takes nothing.
            with resumptions_held():
                if resume_unless_cancelled(receiver[0], False, item)[0]:
                    k.send(None)
                    return
        if len(self._buffer) < self._capacity:
            self._buffer.append(item)
            k.send(None)
        else:
            self._senders.push(k, item)

    def try_send(self, item: T) -> bool:
        """Put ``item`` in the channel if that needs no waiting; return whether it did.

        Raises :class:`ClosedError` if the channel is closed.
        """
        if self._closed:
            raise ClosedError("try_send() on a closed Channel")
        while self._receivers:
            receiver = self._receivers.pop()
            if receiver is None:
                break
            if resume_unless_cancelled(receiver[0], False, item)[0]:
                return True
        if len(self._buffer) < self._capacity:
            self._buffer.append(item)
            return True
        return False

    # -- receiving ----------------------------------------------------------------
    async def receive(self) -> T:
        """Take the next item, waiting for one if the channel is empty.

        Raises :class:`EndOfChannel` once the channel is closed and empty.
        """
        if self._buffer and not self._senders:
            return self._buffer.popleft()
        return await shift(self.receive_cb)

    @ki_sensitive
    def receive_cb(self, k: AnsweringContinuation[Any, T, Any]) -> None:
        """Resume ``k`` with the next item."""
        if self._buffer:
            item = self._buffer.popleft()
            sender = self._senders.pop() if self._senders else None
            if sender is None:
                k.send(item)
                return
            # Room was made: the longest-waiting sender's item goes in.
            sk, sent = sender
            self._buffer.append(sent)
        else:
            sender = self._senders.pop() if self._senders else None
            if sender is None:
                if self._closed:
                    k.throw(EndOfChannel("the Channel is closed and empty"))
                else:
                    self._receivers.push(k, None)
                return
            # Only with capacity 0: take the waiting sender's item directly.
            sk, item = sender
        # Both are claimed before either runs, so neither can be cancelled by
        # the other's code in between; the sender, waiting longer, runs first.
        with resumptions_held():
            sk.send(None)
            if k.is_cancelled():
                # Withdrawn by the sender's own resumption: both are branches
                # of one first_of, whose send won.  The item stays first in
                # line for the next receiver instead of being lost.
                self._buffer.appendleft(item)
            else:
                k.send(item)

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except EndOfChannel:
            raise StopAsyncIteration from None

    # -- closing ------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel (see the class documentation); closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        senders = self._senders.pop_all()
        receivers = self._receivers.pop_all()
        try:
            wake_all(senders, ClosedError("the Channel was closed before this item went in"), True)
        finally:
            wake_all(receivers, EndOfChannel("the Channel is closed and empty"), True)

    def is_closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed

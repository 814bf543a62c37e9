"""``Event``: a flag that tasks can wait for."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from .._core._continuation import AnsweringContinuation
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._errors import ClosedError, check_exception
from ._waiters import Waiters, wake_all


class Event:
    """A one-way flag: once set it stays set, and every waiter is woken.

    Waiters are woken in the order they started waiting, each running up to
    its next suspension point before the next one starts.  :meth:`close`
    fails every waiter (and every later one) instead.  The first of
    :meth:`set` and :meth:`close` decides; later calls do nothing.

    A waiter cancelled while it waits simply stops waiting.
    """

    __slots__ = ("_closed", "_closed_tb", "_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._closed: BaseException | None = None
        # Raised afresh from this traceback at every wait (see RequestQueue).
        self._closed_tb: TracebackType | None = None
        self._waiters: Waiters[None] = Waiters()

    def __repr__(self) -> str:
        state = "set" if self._set else "closed" if self._closed is not None else "unset"
        return f"<Event {state}>"

    def is_set(self) -> bool:
        """True once :meth:`set` has been called (and :meth:`close` had not been)."""
        return self._set

    async def wait(self) -> None:
        """Return once the event is set (at once if it already is); raise if it was closed."""
        if self._set:
            return
        await shift(self.wait_cb)

    @ki_sensitive
    def wait_cb(self, k: AnsweringContinuation[Any, None, Any]) -> None:
        """Resume ``k`` once the event is set."""
        if self._set:
            k.send(None)
        elif self._closed is not None:
            k.throw(self._closed.with_traceback(self._closed_tb))
        else:
            self._waiters.push(k, None)

    def set(self) -> None:
        """Set the event and wake every waiter, in order."""
        if self._set or self._closed is not None:
            return
        self._set = True
        if self._waiters:
            wake_all(self._waiters.pop_all(), None)

    def close(self, exc: BaseException | None = None) -> None:
        """Fail every waiter, and every later :meth:`wait`, with ``exc``.

        ``exc`` defaults to :class:`ClosedError`.
        """
        if exc is not None:
            check_exception(exc, "Event.close()")
        if self._set or self._closed is not None:
            return
        if exc is None:
            exc = ClosedError("the Event was closed without being set")
        self._closed = exc
        self._closed_tb = exc.__traceback__
        wake_all(self._waiters.pop_all(), exc, is_exc=True)

"""``Lock``: mutual exclusion, handed to waiters first come, first served."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from .._core._continuation import AnsweringContinuation
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._waiters import Waiters, resume_unless_cancelled


class Lock:
    """A mutual-exclusion lock, usually held with ``async with lock:``.

    When the holder releases the lock, it passes straight to the task that
    has waited longest: nobody can overtake a waiter.  A waiter cancelled
    before its turn leaves the line; one whose turn has come holds the lock
    (its cancellation arrives at its next checkpoint, inside the
    ``async with`` block, which then releases it), so the lock is never lost.
    The lock has no notion of an owner: any code may release it.
    """

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: Waiters[None] = Waiters()

    def __repr__(self) -> str:
        if not self._locked:
            return "<Lock unlocked>"
        return f"<Lock locked, {len(self._waiters)} waiting>"

    def locked(self) -> bool:
        """True while someone holds the lock."""
        return self._locked

    def try_acquire(self) -> bool:
        """Take the lock if it is free right now; return whether it was taken."""
        if self._locked:
            return False
        self._locked = True
        return True

    async def acquire(self) -> None:
        """Wait for the lock and take it."""
        if not self._locked:
            self._locked = True
            return
        await shift(self.acquire_cb)

    @ki_sensitive
    def acquire_cb(self, k: AnsweringContinuation[Any, None, Any]) -> None:
        """Resume ``k`` once the lock is taken on its behalf."""
        if self._locked:
            self._waiters.push(k, None)
        else:
            self._locked = True
            k.send(None)

    def release(self) -> None:
        """Release the lock, handing it to the longest waiter if there is one."""
        if not self._locked:
            raise RuntimeError("release() of a Lock that is not held")
        while self._waiters:
            nxt = self._waiters.pop()
            if nxt is None:
                break
            # A waiter cancelled from another thread meanwhile does not take it.
            if resume_unless_cancelled(nxt[0], False, None)[0]:
                return
        self._locked = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

"""``Selector``: fd readiness and timers with no event loop, on the ``selectors`` module."""

from __future__ import annotations

import heapq
import itertools
import math
import os
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

from .._core._shift import shift
from ._fd import (
    READ,
    WRITE,
    FileDescriptorLike,
    busy_error,
    closed_error,
    closing_error,
    fileno,
)

_EVENTS = (selectors.EVENT_READ, selectors.EVENT_WRITE)

# Kernel selectors refuse a bad fd when it is registered; select() and poll()
# find out only when they are called, so the Selector checks the fd itself.
_KERNEL_CHECKED: tuple[type[selectors.BaseSelector], ...] = tuple(
    getattr(selectors, name)
    for name in ("EpollSelector", "KqueueSelector", "DevpollSelector")
    if hasattr(selectors, name)
)

# The longest single wait in the kernel, in seconds: epoll refuses a timeout of
# 25 days or more and select() one past time_t, so a later deadline is waited
# for a day at a time (asyncio caps its select the same way).
_MAX_WAIT = 24 * 3600.0

# A batch of resumptions: (continuation, exception to throw or None).
_Batch = list[tuple[Any, BaseException | None]]


class Selector:
    """A native I/O effect handler: waits for fds and timers by blocking in the kernel.

    Coroutines ``await`` its operations (:meth:`wait_readable`,
    :meth:`wait_writable`, :meth:`sleep`); each one parks the coroutine's
    continuation here.  :meth:`run` then blocks in the kernel and resumes
    the parked coroutines as their fds become ready and their timers expire,
    until nothing is left waiting.  No event loop is involved: start
    coroutines with :func:`dneio.reset` and call :meth:`run` from plain code.

    Several selectors can coexist; each serves only what was parked on it.
    A selector belongs to the thread that runs it: park coroutines on it
    from that thread (coroutines of trio or asyncio tasks included; they
    are resumed synchronously by :meth:`run` and can be cancelled while
    they wait).

    Order: in each round, expired timers are resumed first, earliest
    deadline first (equal deadlines in the order ``sleep`` was called), then
    ready fds in the order the kernel reported them, the reader of an fd
    before its writer.

    Only one coroutine may wait for an fd in each direction; a second one
    gets :class:`~dneio.io.FdBusyError` at once and the first keeps waiting.
    """

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        check_interval: float | None = 1.0,
    ) -> None:
        """Wrap ``selector`` (default: a new ``selectors.DefaultSelector()``).

        While fds are waited for and nothing happens, the registered fds are
        checked every ``check_interval`` seconds, so that a waiter whose fd
        was closed under it (without :meth:`notify_closing`) gets an
        ``OSError`` instead of waiting forever.  ``None`` turns the check off.
        """
        if check_interval is not None and not check_interval > 0:
            raise ValueError(
                f"check_interval must be a positive number or None, not {check_interval!r}"
            )
        self._sel = selectors.DefaultSelector() if selector is None else selector
        self._check_on_register = not isinstance(self._sel, _KERNEL_CHECKED)
        self._check_interval = check_interval
        # fd -> [reader continuation or None, writer continuation or None]
        self._fds: dict[int, list[Any]] = {}
        # heap of [deadline, sequence, continuation or None once cancelled]
        self._timers: list[list[Any]] = []
        self._live_timers = 0
        self._seq = itertools.count()
        self._running: int | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.waiting()} waiting"
        return f"<dneio.io.Selector on {type(self._sel).__name__}, {state}>"

    def __enter__(self) -> Selector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- operations ------------------------------------------------------------
    async def wait_readable(self, fd: FileDescriptorLike) -> None:
        """Wait until ``fd`` is readable (or at end of file, or in error)."""
        n = fileno(fd)
        await shift(lambda k: self._park_fd(n, READ, k))

    async def wait_writable(self, fd: FileDescriptorLike) -> None:
        """Wait until ``fd`` is writable (or in error)."""
        n = fileno(fd)
        await shift(lambda k: self._park_fd(n, WRITE, k))

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (non-negative; ``sleep(0)`` waits for the next round of :meth:`run`)."""
        if not seconds >= 0:
            raise ValueError(f"sleep() takes a non-negative number of seconds, not {seconds!r}")
        deadline = time.monotonic() + seconds
        await shift(lambda k: self._park_timer(deadline, k))

    def notify_closing(self, fd: FileDescriptorLike) -> None:
        """Say that ``fd`` is about to be closed: its waiters get ``OSError(EBADF)`` now.

        Call it before closing an fd that a coroutine may be waiting for.
        Closing the fd first would leave the kernel nothing to report, and
        the fd number could be reused by the next file opened.
        """
        n = fileno(fd)
        slots = self._fds.pop(n, None)
        if slots is None:
            return
        self._unregister(n)
        self._resume_batch([(k, closing_error(n)) for k in slots if k is not None])

    def waiting(self) -> int:
        """How many coroutines are parked here (fd waits and timers)."""
        return sum((r is not None) + (w is not None) for r, w in self._fds.values()) + (
            self._live_timers
        )

    def close(self) -> None:
        """Release the kernel selector; coroutines still parked get ``RuntimeError``."""
        if self._closed:
            return
        if self._running is not None:
            raise RuntimeError("a Selector cannot be closed while its run() is running")
        self._closed = True
        batch: _Batch = []
        for slots in self._fds.values():
            batch.extend((k, _closed_selector_error()) for k in slots if k is not None)
        batch.extend((t[2], _closed_selector_error()) for t in self._timers if t[2] is not None)
        self._fds.clear()
        self._timers.clear()
        self._live_timers = 0
        self._sel.close()
        self._resume_batch(batch)

    # -- running ---------------------------------------------------------------
    def run(self, timeout: float | None = None, *, until: Callable[[], bool] | None = None) -> bool:
        """Block in the kernel and resume parked coroutines until none is left waiting.

        Stops early once ``until()`` (checked before every round) is true, or
        once ``timeout`` seconds have passed; ``run(0)`` resumes only what is
        ready right now.  Returns True if it stopped because nothing was left
        waiting or ``until()`` was true, False if the timeout ran out first.

        An exception that escapes a coroutine resumed here (a native one that
        failed: nobody else is there to receive it) is raised from ``run``
        once every other resumption of the round is done; the selector stays
        usable.
        """
        if self._closed:
            raise RuntimeError("this Selector is closed")
        if self._running is not None:
            raise RuntimeError(
                "Selector.run() is already running: a coroutine it resumed called run() again; "
                "await the selector's operations instead"
            )
        self._running = threading.get_ident()
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            first = True
            while True:
                if until is not None and until():
                    return True
                if not self._fds and not self._live_timers:
                    return True
                now = time.monotonic()
                if not first and deadline is not None and now >= deadline:
                    return False
                first = False
                self._round(now, deadline)
        finally:
            self._running = None

    def _round(self, now: float, deadline: float | None) -> None:
        wait = math.inf if deadline is None else max(0.0, deadline - now)
        timers = self._timers
        while timers and timers[0][2] is None:
            heapq.heappop(timers)
        if timers:
            wait = min(wait, max(0.0, timers[0][0] - now))
        check = self._check_interval
        idle_check = False
        if check is not None and self._fds and wait >= check:
            idle_check, wait = True, check
        try:
            events = self._sel.select(None if wait == math.inf else min(wait, _MAX_WAIT))
        except OSError:
            # select() fails as a whole for one bad fd: find it and fail its waiters.
            bad = self._check_fds()
            if not bad:
                raise
            self._resume_batch(bad)
            return
        batch: _Batch = []
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            if entry[2] is not None:
                self._live_timers -= 1
                batch.append((entry[2], None))
        fds = self._fds
        for key, mask in events:
            slots = fds.get(key.fd)
            if slots is None:
                continue
            for direction in (READ, WRITE):
                k = slots[direction]
                if k is not None and mask & _EVENTS[direction]:
                    slots[direction] = None
                    batch.append((k, None))
            self._update(key.fd, slots, batch)
        if not batch and idle_check:
            batch = self._check_fds()
        self._resume_batch(batch)

    # -- bookkeeping -----------------------------------------------------------
    def _guard(self) -> None:
        if self._closed:
            raise RuntimeError("this Selector is closed")
        running = self._running
        if running is not None and running != threading.get_ident():
            raise RuntimeError(
                "a Selector belongs to the thread that runs it: its run() is running on "
                "another thread. Use one Selector per thread."
            )

    def _park_fd(self, fd: int, direction: int, k: Any) -> None:
        self._guard()
        slots = self._fds.get(fd)
        if slots is None:
            if self._check_on_register:
                os.fstat(fd)
            self._sel.register(fd, _EVENTS[direction])
            slots = self._fds[fd] = [None, None]
        elif slots[direction] is not None:
            raise busy_error(fd, direction)
        else:
            try:
                self._sel.modify(fd, selectors.EVENT_READ | selectors.EVENT_WRITE)
            except OSError:
                # Closed under the coroutine waiting in the other direction.
                other = 1 - direction
                del self._fds[fd]
                self._unregister(fd)
                self._resume_batch([(slots[other], closed_error(fd, other))])
                raise
        slots[direction] = k
        k.on_cancel(lambda: self._forget(fd, direction, k))

    def _forget(self, fd: int, direction: int, k: Any) -> None:
        slots = self._fds.get(fd)
        if slots is not None and slots[direction] is k:
            slots[direction] = None
            batch: _Batch = []
            self._update(fd, slots, batch)
            self._resume_batch(batch)

    def _update(self, fd: int, slots: list[Any], batch: _Batch) -> None:
        """Register with the kernel exactly the directions still waited for."""
        mask = (slots[READ] is not None and selectors.EVENT_READ) | (
            slots[WRITE] is not None and selectors.EVENT_WRITE
        )
        if not mask:
            del self._fds[fd]
            self._unregister(fd)
            return
        try:
            self._sel.modify(fd, mask)
        except OSError:
            # The fd was closed under its remaining waiter.
            del self._fds[fd]
            self._unregister(fd)
            batch.extend((k, closed_error(fd, d)) for d, k in enumerate(slots) if k is not None)

    def _unregister(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def _check_fds(self) -> _Batch:
        batch: _Batch = []
        for fd in list(self._fds):
            try:
                os.fstat(fd)
            except OSError:
                slots = self._fds.pop(fd)
                self._unregister(fd)
                batch.extend((k, closed_error(fd, d)) for d, k in enumerate(slots) if k is not None)
        return batch

    def _park_timer(self, deadline: float, k: Any) -> None:
        self._guard()
        entry = [deadline, next(self._seq), k]
        heapq.heappush(self._timers, entry)
        self._live_timers += 1
        k.on_cancel(lambda: self._cancel_timer(entry))

    def _cancel_timer(self, entry: list[Any]) -> None:
        if entry[2] is not None:
            entry[2] = None
            self._live_timers -= 1

    @staticmethod
    def _resume_batch(batch: _Batch) -> None:
        errors: list[BaseException] = []
        for k, exc in batch:
            try:
                if exc is None:
                    k.send(None)
                else:
                    k.throw(exc)
            except BaseException as error:
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("several coroutines resumed by a Selector failed", errors)


def _closed_selector_error() -> RuntimeError:
    return RuntimeError("the Selector this coroutine was waiting on was closed")

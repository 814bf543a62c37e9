"""The Twisted side of :func:`dneio.io.host`: fd readiness and timers from the reactor."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python import threadable
from zope.interface import implementer

from ..._io._fd import (
    READ,
    WRITE,
    FileDescriptorLike,
    busy_error,
    closed_error,
    closing_error,
    fileno,
)
from ..._io._shift_io import ShiftIO


@implementer(IReadDescriptor, IWriteDescriptor)
class _Watch:
    """What the reactor watches for one fd: its reader and its writer, if any.

    Twisted's reactors keep one descriptor object per fd for both
    directions, so both waiters of an fd share this one.
    """

    __slots__ = ("fd", "io", "waiters")

    def __init__(self, io: TwistedIO, fd: int) -> None:
        self.io = io
        self.fd = fd
        self.waiters: list[Any] = [None, None]

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return f"dneio fd {self.fd}"

    def doRead(self) -> None:
        self.io._ready(self, READ)

    def doWrite(self) -> None:
        self.io._ready(self, WRITE)

    def connectionLost(self, reason: object) -> None:
        # The reactor gave up on the fd (it saw it closed): fail both waiters.
        self.io._lost(self)

    def __repr__(self) -> str:
        return f"<dneio fd watch {self.fd}>"


class TwistedIO(ShiftIO):
    """Waits on one Twisted reactor (``addReader``/``addWriter``, ``callLater``).

    Each wait is an ``await shift(...)`` whose continuation the reactor's
    callback resumes, so waiters wake synchronously and in order, native
    coroutines started with ``reset`` inside the reactor can use it too,
    and a cancelled coroutine's fd is unregistered at once.  It works on
    every reactor, the asyncio one included.
    """

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._watches: dict[int, _Watch] = {}

    def __repr__(self) -> str:
        return f"<dneio.io host I/O on twisted reactor {type(self._reactor).__name__}>"

    def notify_closing(self, fd: FileDescriptorLike) -> None:
        n = fileno(fd)
        watch = self._watches.get(n)
        if watch is None:
            return
        waiters = list(watch.waiters)
        watch.waiters = [None, None]
        self._unwatch(watch, READ, WRITE)
        for k in waiters:
            if k is not None:
                k.throw(closing_error(n))

    # -- bookkeeping -----------------------------------------------------------
    def _check_thread(self) -> None:
        # threadable.isInIOThread(), inlined: the reactor records its thread there.
        if installed() is not self._reactor or threadable.ioThread != threading.get_ident():
            raise RuntimeError(
                "this host I/O object belongs to another Twisted reactor (or its reactor "
                "does not run on this thread); call dneio.io.host() where you use it"
            )

    def _park(self, fd: int, direction: int, k: Any) -> None:
        self._check_thread()
        watch = self._watches.get(fd)
        if watch is not None and watch.waiters[direction] is not None:
            raise busy_error(fd, direction)
        os.fstat(fd)  # a closed fd: OSError(EBADF), as on every runner
        if watch is None:
            watch = _Watch(self, fd)
        if direction == READ:
            self._reactor.addReader(watch)
        else:
            self._reactor.addWriter(watch)
        self._watches[fd] = watch
        watch.waiters[direction] = k
        k.on_cancel(lambda: self._forget(watch, direction, k))

    def _ready(self, watch: _Watch, direction: int) -> None:
        k = watch.waiters[direction]
        watch.waiters[direction] = None
        self._unwatch(watch, direction)
        if k is not None:
            k.send(None)

    def _lost(self, watch: _Watch) -> None:
        waiters = list(watch.waiters)
        watch.waiters = [None, None]
        self._unwatch(watch, READ, WRITE)
        for direction, k in enumerate(waiters):
            if k is not None:
                k.throw(closed_error(watch.fd, direction))

    def _forget(self, watch: _Watch, direction: int, k: Any) -> None:
        if watch.waiters[direction] is k:
            watch.waiters[direction] = None
            self._unwatch(watch, direction)

    def _unwatch(self, watch: _Watch, *directions: int) -> None:
        for direction in directions:
            remove = self._reactor.removeReader if direction == READ else self._reactor.removeWriter
            try:
                remove(watch)
            except (OSError, ValueError, KeyError):
                pass  # already closed: the kernel forgot it with the fd
        if watch.waiters == [None, None] and self._watches.get(watch.fd) is watch:
            del self._watches[watch.fd]

    def _park_timer(self, seconds: float, k: Any) -> None:
        self._check_thread()
        call = self._reactor.callLater(seconds, k.send, None)
        k.on_cancel(lambda: call.cancel() if call.active() else None)


def installed() -> Any:
    return sys.modules.get("twisted.internet.reactor")


def current_io() -> TwistedIO:
    reactor = installed()
    if reactor is None:
        raise RuntimeError(
            "dneio.io.host() was called in a Twisted coroutine, but no reactor is installed: "
            "run the program under twisted.internet.task.react or reactor.run()"
        )
    # One per reactor (kept on it), so that every host() call on a reactor
    # shares the waiter maps.
    io = getattr(reactor, "_dneio_io", None)
    if io is None:
        io = reactor._dneio_io = TwistedIO(reactor)
    return io

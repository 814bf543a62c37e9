"""The asyncio side of :func:`dneio.io.host`: fd readiness and timers from the running loop."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from ..._io._fd import READ, WRITE, FileDescriptorLike, busy_error, closing_error, fileno
from ..._io._shift_io import ShiftIO


class AsyncioIO(ShiftIO):
    """Waits on one asyncio loop (``add_reader``/``add_writer``, ``call_later``).

    Each wait is an ``await shift(...)`` whose continuation the loop's
    callback resumes, so waiters wake synchronously and in order, native
    coroutines started with ``reset`` inside the loop can use it too, and a
    cancelled task's fd is unregistered at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # asyncio keeps one callback per fd and direction and silently
        # replaces it; these maps let a second waiter be refused instead.
        self._waiting: tuple[dict[int, Any], dict[int, Any]] = ({}, {})

    def __repr__(self) -> str:
        return f"<dneio.io host I/O on asyncio loop {self._loop!r}>"

    def notify_closing(self, fd: FileDescriptorLike) -> None:
        n = fileno(fd)
        for direction in (READ, WRITE):
            k = self._waiting[direction].pop(n, None)
            if k is not None:
                self._remove(n, direction)
                k.throw(closing_error(n))

    # -- bookkeeping -----------------------------------------------------------
    def _check_loop(self) -> None:
        if asyncio._get_running_loop() is not self._loop:
            raise RuntimeError(
                "this host I/O object belongs to another asyncio loop (or its loop is not "
                "running on this thread); call dneio.io.host() where you use it"
            )

    def _park(self, fd: int, direction: int, k: Any) -> None:
        self._check_loop()
        waiting = self._waiting[direction]
        if fd in waiting:
            raise busy_error(fd, direction)
        add = self._loop.add_reader if direction == READ else self._loop.add_writer
        add(fd, self._ready, fd, direction, k)
        waiting[fd] = k
        k.on_cancel(lambda: self._forget(fd, direction, k))

    def _ready(self, fd: int, direction: int, k: Any) -> None:
        waiting = self._waiting[direction]
        if fd in waiting and waiting[fd] is k:
            del waiting[fd]
            self._remove(fd, direction)
            k.send(None)

    def _forget(self, fd: int, direction: int, k: Any) -> None:
        waiting = self._waiting[direction]
        if fd in waiting and waiting[fd] is k:
            del waiting[fd]
            self._remove(fd, direction)

    def _remove(self, fd: int, direction: int) -> None:
        remove = self._loop.remove_reader if direction == READ else self._loop.remove_writer
        try:
            remove(fd)
        except (OSError, ValueError):
            pass  # already closed: the kernel forgot it with the fd

    def _park_timer(self, seconds: float, k: Any) -> None:
        self._check_loop()
        handle = self._loop.call_later(seconds, k.send, None)
        k.on_cancel(handle.cancel)


# One per loop, so that every host() call on a loop shares the waiter maps.
_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncioIO] = (
    weakref.WeakKeyDictionary()
)


def current_io() -> AsyncioIO:
    loop = asyncio.get_running_loop()
    io = _per_loop.get(loop)
    if io is None:
        io = _per_loop[loop] = AsyncioIO(loop)
    return io

"""The front every loop-backed I/O object shares: check the arguments, then shift."""

from __future__ import annotations

from typing import Any

from .._core._shift import shift
from ._fd import READ, WRITE, FileDescriptorLike, fileno


class ShiftIO:
    """``wait_readable``, ``wait_writable`` and ``sleep`` as shifts into ``_park``/``_park_timer``.

    A subclass registers the continuation ``k`` with its loop in
    ``_park(fd, direction, k)`` and ``_park_timer(seconds, k)``; the loop's
    callback resumes it, so waiters wake synchronously and in order.
    """

    __slots__ = ()

    async def wait_readable(self, fd: FileDescriptorLike) -> None:
        n = fileno(fd)
        await shift(lambda k: self._park(n, READ, k))

    async def wait_writable(self, fd: FileDescriptorLike) -> None:
        n = fileno(fd)
        await shift(lambda k: self._park(n, WRITE, k))

    async def sleep(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"sleep() takes a non-negative number of seconds, not {seconds!r}")
        await shift(lambda k: self._park_timer(seconds, k))

    def _park(self, fd: int, direction: int, k: Any) -> None:
        raise NotImplementedError

    def _park_timer(self, seconds: float, k: Any) -> None:
        raise NotImplementedError

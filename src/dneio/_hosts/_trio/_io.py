"""The trio side of :func:`dneio.io.host`: trio's own fd waits and sleep."""

from __future__ import annotations

import trio
import trio.lowlevel as tl

from ..._io._fd import READ, WRITE, FileDescriptorLike, busy_error, closing_error, fileno


class TrioIO:
    """Delegates to ``trio.lowlevel.wait_readable``/``wait_writable`` and ``trio.sleep``.

    trio's own errors are translated into the ones every dneio I/O object
    raises (:class:`~dneio.io.FdBusyError`, ``OSError(EBADF)``), so protocol
    code handles them the same way on every runner.
    """

    def __repr__(self) -> str:
        return "<dneio.io host I/O on trio>"

    async def wait_readable(self, fd: FileDescriptorLike) -> None:
        n = fileno(fd)
        try:
            await tl.wait_readable(n)
        except trio.BusyResourceError as exc:
            raise busy_error(n, READ) from exc
        except trio.ClosedResourceError as exc:
            raise closing_error(n) from exc

    async def wait_writable(self, fd: FileDescriptorLike) -> None:
        n = fileno(fd)
        try:
            await tl.wait_writable(n)
        except trio.BusyResourceError as exc:
            raise busy_error(n, WRITE) from exc
        except trio.ClosedResourceError as exc:
            raise closing_error(n) from exc

    async def sleep(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"sleep() takes a non-negative number of seconds, not {seconds!r}")
        await trio.sleep(seconds)

    def notify_closing(self, fd: FileDescriptorLike) -> None:
        tl.notify_closing(fileno(fd))


TRIO_IO = TrioIO()

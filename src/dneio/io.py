"""I/O effect handlers: wait for file descriptors and timers, natively or on the host loop.

Protocol code takes an I/O object as an argument and awaits its three
operations; it never asks which runner it is on:

* :class:`Selector` serves them natively, with no event loop: it blocks in
  the kernel itself (``selectors``) when you call its :meth:`~Selector.run`;
* :func:`host` returns an object that serves them from the trio, asyncio or
  Twisted loop running on this thread (uvloop and anyio included).

Every I/O object reports misuse the same way: a negative fd is a
``ValueError``, a closed one an ``OSError`` (``EBADF``), a second waiter for
the same fd and direction an :class:`FdBusyError` (the first keeps waiting),
and a waiter whose fd is passed to ``notify_closing`` an ``OSError(EBADF)``.
"""

from __future__ import annotations

from typing import Protocol

from ._core._impl import current_state
from ._core._registry import loop_runner, task_runner
from ._io._fd import FdBusyError, FileDescriptorLike, HasFileno
from ._io._selector import Selector
from ._public import publish


class IO(Protocol):
    """What every dneio I/O object provides."""

    async def wait_readable(self, fd: FileDescriptorLike) -> None:
        """Wait until ``fd`` is readable (data, end of file, or an error to read)."""

    async def wait_writable(self, fd: FileDescriptorLike) -> None:
        """Wait until ``fd`` is writable (buffer space, or an error to read)."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a non-negative number)."""

    def notify_closing(self, fd: FileDescriptorLike) -> None:
        """Wake the waiters on ``fd`` with ``OSError(EBADF)``; call it before closing ``fd``."""


def host(native: IO | None = None) -> IO:
    """The I/O object of the trio, asyncio or Twisted loop running on this thread.

    With no such loop, returns ``native`` (typically a :class:`Selector`
    that you then drive with its ``run()``), so one call picks the right
    object for whichever runner the program was started with::

        io = dneio.io.host(native=selector)

    Raises ``RuntimeError`` if no loop is running and ``native`` is None.
    The trio object delegates to ``trio.lowlevel.wait_readable`` and friends;
    the asyncio one (one per loop) to ``loop.add_reader`` and
    ``loop.call_later``; the Twisted one (one per reactor) to
    ``reactor.addReader`` and ``reactor.callLater``.  Where two loops run on
    one thread (Twisted's asyncio reactor), the runner of the task calling
    ``host()`` decides: a Twisted coroutine gets the reactor's object, an
    asyncio task the loop's.
    """
    # Native code asks the loops: the task it was started from is not its own.
    runner = (task_runner() if current_state().driving is None else None) or loop_runner()
    if runner is None:
        if native is not None:
            return native
        raise RuntimeError(
            "dneio.io.host() found no trio, asyncio or Twisted loop running on this thread. "
            "Outside one, pass the object to use natively, host(native=dneio.io.Selector()), "
            "and drive that selector with its run() method."
        )
    if runner.name == "trio":
        from ._hosts._trio._io import TRIO_IO

        return TRIO_IO
    if runner.name == "twisted":
        from ._hosts._twisted._io import current_io as twisted_io

        return twisted_io()
    from ._hosts._asyncio._io import current_io

    return current_io()


__all__ = ["IO", "FdBusyError", "FileDescriptorLike", "HasFileno", "Selector", "host"]

publish("dneio.io", globals())


"""File descriptor arguments and the errors every I/O object raises alike.

The native :class:`~dneio.io.Selector` and the host adapters of
:func:`dneio.io.host` report the same misuse with the same exception types,
so protocol code written against one of them handles errors the same way on
every runner.
"""

from __future__ import annotations

import errno
from typing import Protocol, TypeAlias


class HasFileno(Protocol):
    def fileno(self) -> int: ...


#: What the ``wait_*`` operations accept: an ``int`` or anything with ``fileno()``.
FileDescriptorLike: TypeAlias = "int | HasFileno"

READ = 0
WRITE = 1
DIRECTION = ("readable", "writable")


class FdBusyError(RuntimeError):
    """Another coroutine is already waiting for this fd in the same direction.

    Only one coroutine at a time may wait for a given file descriptor to
    become readable (and one to become writable): with two, which of them
    should consume the data?  Let one coroutine do the reading and hand the
    data to the others.
    """


def fileno(fd: FileDescriptorLike) -> int:
    """The descriptor number of ``fd``; ``ValueError`` if negative, ``TypeError`` if not an fd."""
    if isinstance(fd, int):
        n = fd
    else:
        get = getattr(fd, "fileno", None)
        if get is None:
            raise TypeError(
                f"expected a file descriptor (an int, or an object with a fileno() method), "
                f"not {fd!r}"
            )
        n = get()
        if not isinstance(n, int):
            raise TypeError(f"{fd!r}.fileno() returned {n!r}, not an int")
    if n < 0:
        raise ValueError(
            f"invalid file descriptor {n}: a negative fd usually means the socket or file "
            "was already closed"
        )
    return n


def busy_error(fd: int, direction: int) -> FdBusyError:
    return FdBusyError(
        f"another coroutine is already waiting for fd {fd} to become {DIRECTION[direction]}; "
        "only one may wait per fd and direction. Let one coroutine do the I/O and hand "
        "the data to the others."
    )


def closing_error(fd: int) -> OSError:
    return OSError(
        errno.EBADF, f"fd {fd} was closed while this coroutine was waiting for it (notify_closing)"
    )


def closed_error(fd: int, direction: int) -> OSError:
    return OSError(
        errno.EBADF,
        f"fd {fd} was closed while this coroutine was waiting for it to become "
        f"{DIRECTION[direction]}; call notify_closing(fd) on the I/O object before closing "
        "an fd that a coroutine may be waiting for",
    )

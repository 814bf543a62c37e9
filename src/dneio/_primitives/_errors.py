"""Errors shared by the concurrency primitives."""

from __future__ import annotations

from typing import Any


class ClosedError(Exception):
    """The primitive was closed, so the operation can never complete.

    ``close()`` raises this (or the exception it was given) in every task
    waiting on the primitive, and in every later operation.
    """


class EndOfChannel(Exception):
    """A closed :class:`~dneio.Channel` has handed out every item it held.

    ``async for`` over a channel ends quietly when this is raised.
    """


def check_exception(exc: Any, where: str) -> BaseException:
    """``exc`` if it is an exception instance; a clear TypeError otherwise."""
    if isinstance(exc, BaseException):
        return exc
    if isinstance(exc, type) and issubclass(exc, BaseException):
        raise TypeError(f"{where} takes an exception instance, not the class {exc.__name__}: "
                        f"pass {exc.__name__}(...)")
    raise TypeError(f"{where} takes an exception instance, not {exc!r}")

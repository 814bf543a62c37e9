"""Errors shared by the concurrency primitives."""

from __future__ import annotations


class ClosedError(Exception):
    """The primitive was closed, so the operation can never complete.

    ``close()`` raises this (or the exception it was given) in every task
    waiting on the primitive, and in every later operation.
    """


class EndOfChannel(Exception):
    """A closed :class:`~dneio.Channel` has handed out every item it held.

    ``async for`` over a channel ends quietly when this is raised.
    """

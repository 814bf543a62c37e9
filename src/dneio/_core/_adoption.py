"""Carrying on a native coroutine as a host task, from a point where it is suspended."""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextvars import Context
from typing import Any


async def adopted(coro: Any, first_yield: Any, context: Context | None = None) -> Any:
    """A coroutine that continues ``coro``, which has just yielded ``first_yield``.

    With ``context`` (the native coroutine's own), ``coro`` goes on running in it.
    """
    return await _Resumed(coro, first_yield, context)


class _Resumed:
    __slots__ = ("context", "coro", "first_yield")

    def __init__(self, coro: Any, first_yield: Any, context: Context | None) -> None:
        self.coro = coro
        self.first_yield = first_yield
        self.context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded, context = self.coro, self.first_yield, self.context
        self.coro = self.first_yield = self.context = None
        try:
            sent = yield yielded
        except BaseException as exc:
            return (yield from carry_on(coro, coro.throw, exc, context))
        return (yield from carry_on(coro, coro.send, sent, context))


def carry_on(
    coro: Any, step: Callable[[Any], Any], arg: Any, context: Context | None = None
) -> Generator[Any, Any, Any]:
    """Step ``coro`` with ``step(arg)``, then pass everything between it and our driver.

    With ``context``, every step of ``coro`` runs in it (rather than in the
    context of the task that carries it on).
    """
    while True:
        try:
            yielded = step(arg) if context is None else context.run(step, arg)
        except StopIteration as stop:
            return stop.value
        try:
            arg = yield yielded
            step = coro.send
        except BaseException as exc:
            arg = exc
            step = coro.throw

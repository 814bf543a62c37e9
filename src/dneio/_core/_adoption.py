"""Carrying on a native coroutine as a host task, from a point where it is suspended."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any


async def adopted(coro: Any, first_yield: Any) -> Any:
    """A coroutine that continues ``coro``, which has just yielded ``first_yield``."""
    return await _Resumed(coro, first_yield)


class _Resumed:
    __slots__ = ("coro", "first_yield")

    def __init__(self, coro: Any, first_yield: Any) -> None:
        self.coro = coro
        self.first_yield = first_yield

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.first_yield
        self.coro = self.first_yield = None
        try:
            sent = yield yielded
        except BaseException as exc:
            return (yield from carry_on(coro, coro.throw, exc))
        return (yield from carry_on(coro, coro.send, sent))


def carry_on(
    coro: Any, step: Callable[[Any], Any], arg: Any
) -> Generator[Any, Any, Any]:
    """Step ``coro`` with ``step(arg)``, then pass everything between it and our driver."""
    while True:
        try:
            yielded = step(arg)
        except StopIteration as stop:
            return stop.value
        try:
            arg = yield yielded
            step = coro.send
        except BaseException as exc:
            arg = exc
            step = coro.throw

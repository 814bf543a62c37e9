"""Carrying on a native coroutine as a host task, from a point where it is suspended."""

from __future__ import annotations

from collections.abc import Generator
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
        while True:
            try:
                sent = yield yielded
            except BaseException as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value

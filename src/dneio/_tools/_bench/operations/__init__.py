"""The operations measured, one module per place they run: natively, on trio, asyncio, Twisted.

Every timed function takes a size ``n`` and returns the total seconds spent
on ``n`` operations (set-up excluded); memory functions return total bytes.
The timed part of each one lies between ``start = start_clock()`` and
``stop_clock(start)``: under ``--callgrind`` those two calls mark where the
instruction count starts and stops (see ``callgrind.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import dneio

_perf_counter = time.perf_counter

#: Called as the clock starts and as it stops, when a run is being counted
#: under callgrind; None otherwise.
markers: tuple[Callable[[], object], Callable[[], object]] | None = None


#: A way to read one value from a callback API: ``await read(api.read_later)``.
Reader = Callable[[Callable[[Any], None]], Awaitable[Any]]


def start_clock() -> float:
    """The start of the timed part of a run."""
    if markers is not None:
        markers[0]()
    return _perf_counter()


def stop_clock(start: float) -> float:
    """The end of the timed part of a run: seconds since ``start``."""
    elapsed = _perf_counter() - start
    if markers is not None:
        markers[1]()
    return elapsed


def api(name: str) -> Any:
    """A public dneio name, looked up when a case runs (cases report missing names)."""
    return getattr(dneio, name)


def run_asyncio(main: Callable[[], Any]) -> Any:
    """Run ``main()`` on a fresh asyncio loop."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


class CallbackAPI:
    """A callback-style API, the kind a user turns into something awaitable.

    ``read_later(cb)`` keeps ``cb`` for another task (or the main loop of a
    native program) to call with the value; ``read_now(cb)`` calls it at
    once, as a cache hit would.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: Callable[[Any], object] | None = None

    def read_later(self, cb: Callable[[Any], object]) -> None:
        self.pending = cb

    def read_now(self, cb: Callable[[Any], object]) -> None:
        cb(1)


def check_total(total: int, expected: int) -> None:
    """Every value delivered reached the reader."""
    if total != expected:
        raise RuntimeError(f"the reader received a total of {total}, not {expected}")

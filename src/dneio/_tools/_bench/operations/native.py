"""Native operations: coroutines run by ``reset``, and the plain-Python baselines."""

from __future__ import annotations

import gc
import importlib
import tracemalloc
from collections.abc import Callable
from typing import Any

from ...._core._driver import reset
from ...._core._shift import shift
from . import CallbackAPI, api, check_total, start_clock, stop_clock


def _identity(k: Any) -> Any:
    return k


class _Done(Exception):
    """Thrown into the shift loop to end it."""


async def _shift_loop() -> str:
    # No counter, as the generator of the baseline has none: a ``range``
    # would add its own iteration to every shift.
    try:
        while True:
            await shift(_identity)
    except _Done:
        return "done"


def shift_resume(n: int) -> float:
    # ``shift(_identity)`` makes each resumption return the next continuation
    # (an ended loop would return its result instead, and the next send fail).
    k = reset(_shift_loop())
    start = start_clock()
    for _ in range(n):
        k = k.send(None)
    elapsed = stop_clock(start)
    if k.throw(_Done()) != "done":
        raise RuntimeError("the shift loop did not end when told to")
    return elapsed


def _gen_loop() -> Any:
    while True:
        yield


def generator_send(n: int) -> float:
    gen = _gen_loop()
    send = gen.send
    send(None)
    start = start_clock()
    for _ in range(n):
        send(None)
    elapsed = stop_clock(start)
    gen.close()
    return elapsed


def greenlet_switch(n: int) -> float:
    greenlet: Any = importlib.import_module("greenlet")
    main = greenlet.getcurrent()

    def body() -> None:
        switch = main.switch
        while True:
            switch()

    child = greenlet.greenlet(body)
    switch = child.switch
    switch()
    start = start_clock()
    for _ in range(n):
        switch()
    elapsed = stop_clock(start)
    child.throw(greenlet.GreenletExit)
    return elapsed


async def echo_server(queue: Any) -> None:
    while True:
        value, k = await queue.get_one()
        k.send(value)


async def requester(queue: Any, n: int, done: list[int] | None = None) -> None:
    request = queue.request
    for i in range(n):
        await request(i)
    if done is not None:
        done.append(n)


def request(n: int) -> float:
    queue = api("RequestQueue")()
    reset(echo_server(queue))
    done: list[int] = []
    start = start_clock()
    # Natively ``reset`` returns once every request has been served: deep
    # chains of resumptions are trampolined, but within the call.
    reset(requester(queue, n, done))
    elapsed = stop_clock(start)
    if done != [n]:
        raise RuntimeError("the native requester did not finish")
    return elapsed


def traced_bytes(make: Callable[[], object]) -> int:
    """Bytes still allocated by ``make()`` while what it returns is alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def parked_memory(n: int) -> float:
    async def parked(park: Callable[[Any], None]) -> None:
        await shift(park)

    def make() -> object:
        continuations: list[Any] = []
        park = continuations.append
        for _ in range(n):
            reset(parked(park))
        return continuations

    return float(traced_bytes(make))


# -- a callback API in direct style: dneio against greenlet ----------------------
#
# The reader reads n values from a CallbackAPI; the program's main loop
# delivers each one by calling the callback the reader left.


def _deliver_all(api: CallbackAPI, n: int) -> None:
    for i in range(n):
        cb = api.pending
        assert cb is not None
        api.pending = None
        cb(i)


def callbacks_shift(n: int) -> float:
    api = CallbackAPI()
    totals: list[int] = []

    async def reader() -> None:
        total = 0
        for _ in range(n):
            total += await shift(api.read_later)
        totals.append(total)

    reset(reader())
    start = start_clock()
    _deliver_all(api, n)
    elapsed = stop_clock(start)
    check_total(totals[0], n * (n - 1) // 2)
    return elapsed


def callbacks_greenlet(n: int) -> float:
    greenlet: Any = importlib.import_module("greenlet")
    getcurrent = greenlet.getcurrent
    main = getcurrent()
    api = CallbackAPI()
    totals: list[int] = []

    def read(read_cb: Callable[[Any], None]) -> Any:
        # Direct style: hand the callback this greenlet's switch, and wait in main.
        read_cb(getcurrent().switch)
        return main.switch()

    def reader() -> None:
        total = 0
        for _ in range(n):
            total += read(api.read_later)
        totals.append(total)

    greenlet.greenlet(reader).switch()
    start = start_clock()
    _deliver_all(api, n)
    elapsed = stop_clock(start)
    check_total(totals[0], n * (n - 1) // 2)
    return elapsed

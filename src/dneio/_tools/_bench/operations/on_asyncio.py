"""Operations inside asyncio tasks, and the asyncio baselines they are compared with."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from ...._core._driver import reset
from ...._core._shift import shift
from . import CallbackAPI, Reader, api, check_total, run_asyncio, start_clock, stop_clock
from .native import echo_server, requester


def request(n: int) -> float:
    async def main() -> float:
        queue = api("RequestQueue")()
        reset(echo_server(queue))
        start = start_clock()
        await requester(queue, n)
        return stop_clock(start)

    result: float = run_asyncio(main)
    return result


def queue_ping_pong(n: int) -> float:
    import asyncio

    async def main() -> float:
        to_server: asyncio.Queue[int] = asyncio.Queue()
        to_client: asyncio.Queue[int] = asyncio.Queue()

        async def server() -> None:
            while True:
                to_client.put_nowait(await to_server.get())

        task = asyncio.get_running_loop().create_task(server())
        await asyncio.sleep(0)
        start = start_clock()
        for i in range(n):
            to_server.put_nowait(i)
            await to_client.get()
        elapsed = stop_clock(start)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return elapsed

    result: float = run_asyncio(main)
    return result


def fan_out(make_event: Callable[[], Any]) -> Callable[[int], float]:
    """Time ``event.set()`` until all ``n`` parked asyncio tasks have run on to their next wait."""

    def run(n: int) -> float:
        import asyncio

        async def main() -> float:
            loop = asyncio.get_running_loop()
            event = make_event()
            all_woken = asyncio.Event()
            finish = asyncio.Event()
            started = 0
            remaining = n

            async def waiter() -> None:
                nonlocal started, remaining
                started += 1
                await event.wait()
                remaining -= 1
                if not remaining:
                    all_woken.set()
                await finish.wait()

            tasks = [loop.create_task(waiter()) for _ in range(n)]
            while started < n:
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            start = start_clock()
            event.set()
            await all_woken.wait()
            elapsed = stop_clock(start)
            finish.set()
            await asyncio.gather(*tasks)
            return elapsed

        result: float = run_asyncio(main)
        return result

    return run


def dneio_event() -> Any:
    return api("Event")()


def asyncio_event() -> Any:
    import asyncio

    return asyncio.Event()


async def _trivial() -> int:
    return 1


def dneio_parallel(n: int) -> float:
    make_n_in_parallel = api("make_n_in_parallel")

    async def main() -> float:
        start = start_clock()
        results = await make_n_in_parallel(_trivial, n)
        elapsed = stop_clock(start)
        if len(results) != n:
            raise RuntimeError("make_n_in_parallel returned the wrong number of results")
        return elapsed

    result: float = run_asyncio(main)
    return result


def gather(n: int) -> float:
    import asyncio

    async def main() -> float:
        start = start_clock()
        results = await asyncio.gather(*[_trivial() for _ in range(n)])
        elapsed = stop_clock(start)
        if len(results) != n:
            raise RuntimeError("asyncio.gather returned the wrong number of results")
        return elapsed

    result: float = run_asyncio(main)
    return result


def parked_memory(n: int) -> float:
    import asyncio

    async def main() -> float:
        loop = asyncio.get_running_loop()
        gate = loop.create_future()

        async def parked() -> None:
            await gate

        def make() -> object:
            return [loop.create_task(parked()) for _ in range(n)]

        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            tasks = make()
            await asyncio.sleep(0)  # every task runs once and parks on the gate
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        gate.set_result(None)
        await asyncio.sleep(0)
        del tasks
        return float(after - before)

    result: float = run_asyncio(main)
    return result


# -- a callback API turned into an awaitable ----------------------------------------
#
# A reader task reads n values from a CallbackAPI.  "later": the main task
# delivers each value by calling the callback the reader left, then yields
# with asyncio.sleep(0); "now": the API calls the callback at once.


async def read_shift(read_cb: Callable[[Any], None]) -> Any:
    return await shift(read_cb)


async def read_future(read_cb: Callable[[Any], None]) -> Any:
    # What a user writes without dneio.
    import asyncio

    fut = asyncio.get_running_loop().create_future()
    read_cb(fut.set_result)
    return await fut


def callbacks_later(read: Reader) -> Callable[[int], float]:
    def run(n: int) -> float:
        import asyncio

        async def reader(api: CallbackAPI) -> int:
            total = 0
            for _ in range(n):
                total += await read(api.read_later)
            return total

        async def main() -> float:
            api = CallbackAPI()
            task = asyncio.get_running_loop().create_task(reader(api))
            await asyncio.sleep(0)  # the reader leaves its first callback
            start = start_clock()
            for i in range(n):
                while (cb := api.pending) is None:
                    await asyncio.sleep(0)
                api.pending = None
                cb(i)
                await asyncio.sleep(0)
            elapsed = stop_clock(start)
            check_total(await task, n * (n - 1) // 2)
            return elapsed

        result: float = run_asyncio(main)
        return result

    return run


def callbacks_now(read: Reader) -> Callable[[int], float]:
    def run(n: int) -> float:
        async def main() -> float:
            api = CallbackAPI()
            read_now = api.read_now
            total = 0
            start = start_clock()
            for _ in range(n):
                total += await read(read_now)
            elapsed = stop_clock(start)
            check_total(total, n)
            return elapsed

        result: float = run_asyncio(main)
        return result

    return run

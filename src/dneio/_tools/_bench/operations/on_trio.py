"""Operations inside trio tasks, and the trio baselines they are compared with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...._core._driver import reset
from ...._core._shift import shift
from . import CallbackAPI, Reader, api, check_total, start_clock, stop_clock
from .native import echo_server, requester


def request(n: int) -> float:
    import trio

    async def main() -> float:
        queue = api("RequestQueue")()
        reset(echo_server(queue))
        start = start_clock()
        await requester(queue, n)
        return stop_clock(start)

    return trio.run(main)


def channel_ping_pong(n: int) -> float:
    import trio
    import trio.testing

    async def main() -> float:
        to_server, server_inbox = trio.open_memory_channel[int](1)
        to_client, client_inbox = trio.open_memory_channel[int](1)

        async def server() -> None:
            async for value in server_inbox:
                await to_client.send(value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            await trio.testing.wait_all_tasks_blocked()
            start = start_clock()
            for i in range(n):
                await to_server.send(i)
                await client_inbox.receive()
            elapsed = stop_clock(start)
            nursery.cancel_scope.cancel()
        return elapsed

    return trio.run(main)


def fan_out(make_event: Callable[[], Any]) -> Callable[[int], float]:
    """Time ``event.set()`` until all ``n`` parked trio tasks have run on to their next wait."""

    def run(n: int) -> float:
        import trio
        import trio.testing

        async def main() -> float:
            event = make_event()
            all_woken = trio.Event()
            finish = trio.Event()
            remaining = n

            async def waiter() -> None:
                nonlocal remaining
                await event.wait()
                remaining -= 1
                if not remaining:
                    all_woken.set()
                await finish.wait()

            async with trio.open_nursery() as nursery:
                for _ in range(n):
                    nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                start = start_clock()
                event.set()
                await all_woken.wait()
                elapsed = stop_clock(start)
                finish.set()
            return elapsed

        result: float = trio.run(main)
        return result

    return run


def dneio_event() -> Any:
    return api("Event")()


def trio_event() -> Any:
    import trio

    return trio.Event()


# -- a callback API turned into an awaitable ----------------------------------------
#
# As on asyncio: "later", the main task delivers each value and yields with
# trio.sleep(0); "now", the API calls the callback at once.


async def read_shift(read_cb: Callable[[Any], None]) -> Any:
    return await shift(read_cb)


def _abort(raise_cancel: Any) -> Any:
    import trio

    return trio.lowlevel.Abort.SUCCEEDED


async def read_rescheduled(read_cb: Callable[[Any], None]) -> Any:
    # What a user writes without dneio, with trio's low-level API (a value
    # delivered before the task waits is kept, not rescheduled).
    import outcome
    import trio

    task = trio.lowlevel.current_task()
    early: list[Any] = []
    waiting = False

    def callback(value: Any) -> None:
        if waiting:
            trio.lowlevel.reschedule(task, outcome.Value(value))
        else:
            early.append(value)

    read_cb(callback)
    if early:
        return early[0]
    waiting = True
    return await trio.lowlevel.wait_task_rescheduled(_abort)


async def read_event(read_cb: Callable[[Any], None]) -> Any:
    # What a user writes without dneio, with trio's public API.
    import trio

    event = trio.Event()
    box: list[Any] = []

    def callback(value: Any) -> None:
        box.append(value)
        event.set()

    read_cb(callback)
    await event.wait()
    return box[0]


def callbacks_later(read: Reader) -> Callable[[int], float]:
    def run(n: int) -> float:
        import trio
        import trio.testing

        async def main() -> float:
            api = CallbackAPI()
            totals: list[int] = []

            async def reader() -> None:
                total = 0
                for _ in range(n):
                    total += await read(api.read_later)
                totals.append(total)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.testing.wait_all_tasks_blocked()  # the first callback is left
                start = start_clock()
                for i in range(n):
                    while (cb := api.pending) is None:
                        await trio.sleep(0)
                    api.pending = None
                    cb(i)
                    await trio.sleep(0)
                elapsed = stop_clock(start)
            check_total(totals[0], n * (n - 1) // 2)
            return elapsed

        result: float = trio.run(main)
        return result

    return run


def callbacks_now(read: Reader) -> Callable[[int], float]:
    def run(n: int) -> float:
        import trio

        async def main() -> float:
            read_now = CallbackAPI().read_now
            total = 0
            start = start_clock()
            for _ in range(n):
                total += await read(read_now)
            elapsed = stop_clock(start)
            check_total(total, n)
            return elapsed

        result: float = trio.run(main)
        return result

    return run

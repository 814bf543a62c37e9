"""Operations inside trio tasks, and the trio baselines they are compared with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...._core._driver import reset
from . import api, start_clock, stop_clock
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

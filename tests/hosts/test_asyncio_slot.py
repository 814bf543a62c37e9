"""The slot an asyncio task parked in ``shift`` waits on: compiled where the core is.

Both slots (the compiled one and its pure-Python twin) run every test of
the asyncio runners; these check which one is in use, and what the
compiled one shows to code that inspects what a task waits on.
"""

from __future__ import annotations

import asyncio
import collections.abc
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from dneio import shift
from dneio._core._impl import compiled
from dneio._hosts._asyncio import _runner


def test_the_compiled_slot_serves_asyncio_tasks_wherever_the_core_is_compiled() -> None:
    if compiled is None:
        # The pure-Python path: the twin serves, through the runner's own generator.
        assert _runner._asyncio_c is None
        assert _runner.PyAsyncioSlotCore in _runner.AsyncioSlot.__mro__
    else:
        # Built with the core (setup.py): never a silent fall back to the twin.
        assert _runner._asyncio_c is not None
        assert _runner._asyncio_c.AsyncioSlotCore in _runner.AsyncioSlot.__mro__
        assert _runner.PyAsyncioSlotCore not in _runner.AsyncioSlot.__mro__


def test_what_a_parked_task_waits_on_is_a_future_and_nothing_else() -> None:
    """asyncio (and Twisted, and anyio) must not take the slot for a coroutine or an iterator."""

    async def main() -> Any:
        parked: list[Any] = []
        task = asyncio.get_running_loop().create_task(shift(parked.append))
        await asyncio.sleep(0)
        slot = task._fut_waiter  # type: ignore[attr-defined]
        seen = {
            "future-like": asyncio.isfuture(slot),
            "coroutine": asyncio.iscoroutine(slot) or inspect.isawaitable(slot),
            "iterator": isinstance(slot, collections.abc.Iterator),
            "generator": isinstance(slot, collections.abc.Generator),
            "loop": slot.get_loop() is asyncio.get_running_loop(),
            "done before": slot.done(),
        }
        parked[0].send("value")
        seen["result"] = await task
        seen["done after"] = slot.done()
        return seen

    assert asyncio.run(main()) == {
        "future-like": True,
        "coroutine": False,
        "iterator": False,
        "generator": False,
        "loop": True,
        "done before": False,
        "result": "value",
        "done after": True,
    }


def test_a_slot_handed_straight_back_is_refused_and_its_holder_told() -> None:
    """Whatever steps the coroutine and sends the slot back (not an asyncio task) loses nothing."""
    told: list[str] = []
    kept: list[Any] = []

    def func(k: Any) -> None:
        kept.append(k)
        k.on_cancel(lambda: told.append("cancelled"))

    async def side() -> Any:
        return await shift(func)

    async def main() -> Any:
        coro = side()
        yielded = coro.send(None)
        try:
            coro.send(yielded)
        except RuntimeError as exc:
            return str(exc)
        return None

    message = asyncio.run(main())
    assert message is not None and "handed the wait straight back" in message
    assert told == ["cancelled"]
    assert kept[0].is_cancelled()


def test_the_hostings_attributes_are_read_at_their_offsets_while_their_classes_allow(
    slot_as_property: Callable[[type, str], AbstractContextManager[list[int]]],
) -> None:
    """Where the compiled hook reads a plain slot of the hosting and its hosts
    at its offset, a class whose attribute is no longer that slot is read
    by name, and read at the offset again once the slot is back."""
    import pytest

    from dneio import RequestQueue, reset

    if _runner._asyncio_c is None:
        pytest.skip("only the compiled part reads at offsets")
    everything = {"Hosting.trio", "Hosting.asyncio", "AsyncioHosting.records",
                  "AsyncioHosting.loops", "AsyncioHosting.free", "_Host.loop", "_Host.ended",
                  "_Host.task", "_Host.ref", "_Host.quit", "_Host.adopted",
                  "_Host.cancel_requested", "AsyncioRunner.synchronous"}
    assert set(_runner._asyncio_c.slot_reads()) == everything

    def requests(n: int) -> tuple[int, set[Any]]:
        async def main() -> tuple[int, set[Any]]:
            queue: RequestQueue[int, int] = RequestQueue()
            hosts: set[Any] = set()

            async def server() -> None:
                while True:
                    value, k = await queue.get_one()
                    hosts.add(asyncio.current_task())
                    k.send(value)

            reset(server())
            total = 0
            for i in range(n):
                total += await queue.request(i)
            assert asyncio.current_task() not in hosts
            return total, hosts

        return asyncio.run(main())

    with slot_as_property(_runner._Host, "ended") as looked_up:
        assert "_Host.ended" not in _runner._asyncio_c.slot_reads()
        total, hosts = requests(100)
    assert total == sum(range(100)) and len(hosts) == 1
    assert len(looked_up) >= 100  # every entry into the server's host asked the property
    assert set(_runner._asyncio_c.slot_reads()) == everything
    assert requests(100)[0] == sum(range(100))
    # A class that looks its attributes up itself is asked for every one.
    asked: list[str] = []

    def getattribute(self: Any, name: str) -> Any:
        asked.append(name)
        return object.__getattribute__(self, name)

    _runner._Host.__getattribute__ = getattribute  # type: ignore[method-assign]
    try:
        assert not any(r.startswith("_Host.") for r in _runner._asyncio_c.slot_reads())
        assert requests(100)[0] == sum(range(100))
    finally:
        del _runner._Host.__getattribute__
    assert asked.count("ended") >= 100
    assert set(_runner._asyncio_c.slot_reads()) == everything

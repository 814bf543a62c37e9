"""Code written against the original dneio (rsyscall-style) keeps working."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

import dneio
from dneio import (
    Continuation,
    Event,
    Future,
    RequestQueue,
    is_running_directly_under_trio,
    make_n_in_parallel,
    reset,
    run_all,
    shift,
)
from dneio.core import TrioSystemWaitReadable, set_trio_system_wait_readable
from dneio.testing import Harness

trio = pytest.importorskip("trio")
pytest.importorskip("trio.testing")


def test_the_original_import_paths() -> None:
    import dneio.concur
    import dneio.core

    for name in ("shift", "reset", "Continuation", "AnsweringContinuation"):
        assert getattr(dneio.core, name) is getattr(dneio, name)
    assert dneio.core.is_running_directly_under_trio is is_running_directly_under_trio
    for name in ("RequestQueue", "Event", "Future", "make_n_in_parallel", "run_all"):
        assert getattr(dneio.concur, name) is getattr(dneio, name)


class Worker:
    """Starts its worker coroutine natively from its constructor, like rsyscall does."""

    def __init__(self) -> None:
        self.queue: RequestQueue[int, int] = RequestQueue()
        self.served = 0
        reset(self._run())

    async def _run(self) -> None:
        while True:
            many = await self.queue.get_many()
            for val, k in many:
                self.served += 1
                k.send(val + 1000)


def test_worker_made_in_a_trio_task_serves_across_trio_runs() -> None:
    workers: list[Worker] = []

    async def first_run() -> list[int]:
        workers.append(Worker())  # constructed while a trio task runs
        return await make_n_in_parallel(lambda: workers[0].queue.request(1), 3)

    async def second_run() -> tuple[int, int]:
        a, b = await run_all(workers[0].queue.request(2), workers[0].queue.request(3))
        return a, b

    assert trio.run(first_run) == [1001, 1001, 1001]
    assert trio.run(second_run) == (1002, 1003)
    assert workers[0].served == 5


def test_future_start_of_a_callable_inside_trio() -> None:
    async def main() -> list[int]:
        async def make() -> int:
            return 5

        return [await Future.start(make).get(), *(await run_all([make, make]))]

    assert trio.run(main) == [5, 5, 5]


def test_is_running_directly_under_trio() -> None:
    seen: list[bool] = []

    async def native() -> None:
        seen.append(is_running_directly_under_trio())

    async def main() -> None:
        seen.append(is_running_directly_under_trio())
        reset(native())

    trio.run(main)
    reset(native())
    assert seen == [True, False, False]


def test_shielded_shift_is_not_cancelled() -> None:
    async def main() -> tuple[Any, bool]:
        held: list[Continuation[str]] = []
        result: list[Any] = []
        with trio.CancelScope() as outer:

            async def resume_later() -> None:
                await trio.testing.wait_all_tasks_blocked()
                outer.cancel()  # the parked task is asked to cancel, and refuses
                assert not held[0].is_cancelled()
                held[0].send("reply")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(resume_later)
                with trio.CancelScope(shield=True):
                    result.append(await shift(held.append))
                # The outer cancellation lands at the next checkpoint.
                await trio.sleep(0)
                result.append("not reached")
        return result, outer.cancelled_caught

    assert trio.run(main) == (["reply"], True)


# -- TrioSystemWaitReadable -----------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        set_trio_system_wait_readable(None)
        os.close(r)
        os.close(w)


def test_wait_readable_from_a_trio_task(pipe: tuple[int, int]) -> None:
    r, w = pipe
    waiter = TrioSystemWaitReadable(r)

    async def main() -> bytes:
        async def writer() -> None:
            await trio.sleep(0.01)
            os.write(w, b"x")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await waiter.wait()
        return os.read(r, 1)

    assert trio.run(main) == b"x"


def test_native_waiter_is_served_by_a_later_trio_run(pipe: tuple[int, int]) -> None:
    r, w = pipe
    waiter = TrioSystemWaitReadable(r)
    set_trio_system_wait_readable(waiter)
    log: list[str] = []
    readable = Event()

    class Reader:
        def __init__(self) -> None:
            reset(self._run())

        async def _run(self) -> None:
            while True:
                await waiter.wait()
                log.append(os.read(r, 1).decode())
                readable.set()

    async def first_run() -> None:
        Reader()  # its coroutine parks in wait(); nothing is written this run
        await trio.sleep(0.01)

    async def second_run() -> None:
        os.write(w, b"y")
        # This trio task shifts, which starts this run's system task; it serves
        # the waiter left over from the first run.
        with trio.fail_after(5):
            await readable.wait()

    trio.run(first_run)
    assert log == []
    for _ in range(3):  # more runs with nothing to do must not break anything
        trio.run(trio.sleep, 0)
    trio.run(second_run)
    assert log == ["y"]


def test_several_waiters_are_woken_in_order(pipe: tuple[int, int]) -> None:
    r, w = pipe
    waiter = TrioSystemWaitReadable(r)
    order: list[int] = []

    async def main() -> None:
        async def wait(i: int) -> None:
            await waiter.wait()
            order.append(i)

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(wait, i)
                await trio.testing.wait_all_tasks_blocked()
            os.write(w, b"z")

    trio.run(main)
    assert order == [0, 1, 2]


def test_cancelled_wait_readable(pipe: tuple[int, int]) -> None:
    r, w = pipe
    waiter = TrioSystemWaitReadable(r)

    async def main() -> bool:
        with trio.move_on_after(0.01) as scope:
            await waiter.wait()
        os.write(w, b"!")
        await waiter.wait()  # the cancelled wait left nothing behind
        return scope.cancelled_caught

    assert trio.run(main) is True


def test_wait_readable_outside_trio_says_what_to_do(pipe: tuple[int, int]) -> None:
    waiter = TrioSystemWaitReadable(pipe[0])
    with pytest.raises(RuntimeError, match=r"trio\.run"):
        reset(waiter.wait())


def test_set_trio_system_wait_readable_checks_its_argument() -> None:
    with pytest.raises(TypeError):
        set_trio_system_wait_readable(3)  # type: ignore[arg-type]


# -- order and scope of delayed cancellations and early resumptions ----------------------------


@pytest.mark.dneio_runners("anyio-asyncio", "anyio-trio")
def test_shielded_cancel_stays_in_its_scope(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> str:
        held: list[Any] = []

        def park_shielded(k: Any) -> None:
            k.shield()
            held.append(k)

        child = h.spawn(shift, park_shielded)
        await h.settle()
        child.cancel()
        await h.settle()
        held[0].send("value")
        await h.settle()  # the parent must not be cancelled here
        return f"parent finished; child got {child.get()!r}"

    assert dneio_runner.run(main) == "parent finished; child got 'value'"


@pytest.mark.dneio_runners("trio-deferred", "asyncio-deferred")
def test_deferred_modes_keep_resumption_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        log: list[str] = []
        box: list[Any] = []

        async def parked() -> None:
            await shift(box.append)
            log.append("resumed first")

        h.spawn(parked)
        await h.settle()
        box[0].send(None)
        await shift(lambda k: k.send(None))
        log.append("resumed second")
        await h.settle()
        return log

    assert dneio_runner.run(main) == ["resumed first", "resumed second"]


def test_dneio_exports_the_primitives() -> None:
    for name in ("Lock", "Channel", "first_of", "RequestQueue", "Event", "Future"):
        assert name in dneio.__all__

"""run_all and make_n_in_parallel on every runner: results, order, and what a failure carries."""

from __future__ import annotations

from typing import Any

import outcome
import pytest

from dneio import Event, RequestQueue, make_n_in_parallel, reset, run_all, run_all_outcomes
from dneio.testing import Harness


def test_run_all_returns_results_in_argument_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, ...]:
        gates = [Event() for _ in range(3)]

        async def value(i: int) -> str:
            await gates[i].wait()
            return f"v{i}"

        async def opener() -> None:
            # Finish them in reverse order.
            for gate in reversed(gates):
                gate.set()
                await h.settle()

        return await run_all(value(0), value(1), value(2), opener())

    assert dneio_runner.run(main) == ("v0", "v1", "v2", None)


def test_run_all_starts_each_awaitable_in_turn(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        log: list[str] = []
        ev = Event()
        b_started = Event()

        async def step(name: str) -> None:
            log.append(f"start {name}")
            if name == "b":
                b_started.set()
            await ev.wait()
            log.append(f"end {name}")

        async def opener() -> None:
            await b_started.wait()
            ev.set()

        h.spawn(opener)
        await run_all(step("a"), step("b"))
        return log

    log = dneio_runner.run(main)
    assert log[:2] == ["start a", "start b"]
    assert sorted(log[2:]) == ["end a", "end b"]


def test_run_all_original_list_of_callables_form(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        async def one() -> int:
            return 1

        async def two() -> int:
            return 2

        return await run_all([one, two, lambda: one()])

    assert dneio_runner.run(main) == [1, 2, 1]


def test_run_all_of_nothing(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        return await run_all(), await run_all([])

    assert dneio_runner.run(main) == ((), [])


def test_make_n_in_parallel(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[int]:
        q: RequestQueue[None, int] = RequestQueue()

        async def server() -> None:
            for i in range(4):
                _, k = await q.get_one()
                k.send(i)

        h.spawn(server)
        # All four requests must be in flight at once for the server to see them.
        return await make_n_in_parallel(lambda: q.request(None), 4)

    assert dneio_runner.run(main) == [0, 1, 2, 3]


def test_first_error_propagates_after_all_finish_with_the_rest_attached(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> tuple[str, list[str], list[str]]:
        gates = [Event() for _ in range(4)]
        finished: list[int] = []

        async def task(i: int) -> int:
            await gates[i].wait()
            finished.append(i)
            if i in (1, 3):
                raise ValueError(f"task {i} failed")
            return i * 100

        async def opener() -> None:
            # Started last by run_all, once the others are waiting.
            for i in (3, 0, 1, 2):
                gates[i].set()
                await h.settle()

        with pytest.raises(ValueError) as info:
            await run_all(task(0), task(1), task(2), task(3), opener())
        return str(info.value), sorted(finished), info.value.__notes__

    message, finished, notes = dneio_runner.run(main)
    assert message == "task 3 failed"  # the first to fail, in time
    assert finished == [0, 1, 2, 3]  # nobody was left running
    assert notes[0] == "run_all: awaitable #3 was the first of 5 to fail"
    assert "run_all: awaitable #0 returned 0" in notes
    assert "run_all: awaitable #2 returned 200" in notes
    [other] = [n for n in notes if n.startswith("run_all: awaitable #1 failed as well")]
    assert "ValueError: task 1 failed" in other
    assert "Traceback" in other


def test_run_all_outcomes_never_raises(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[Any]:
        async def ok() -> str:
            return "fine"

        async def bad() -> str:
            raise KeyError("k")

        results = await run_all_outcomes(ok(), bad())
        assert isinstance(results[1], outcome.Error)
        return [results[0].unwrap(), type(results[1].error).__name__]

    assert dneio_runner.run(main) == ["fine", "KeyError"]


def test_make_n_in_parallel_failure(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        count = 0

        async def make() -> int:
            nonlocal count
            count += 1
            if count == 2:
                raise RuntimeError("second failed")
            return count

        with pytest.raises(RuntimeError, match="second failed") as info:
            await make_n_in_parallel(make, 3)
        return info.value.__notes__

    notes = dneio_runner.run(main)
    assert notes[0] == "run_all: awaitable #1 was the first of 3 to fail"
    assert "run_all: awaitable #2 returned 3" in notes


def test_run_all_of_host_awaitables(dneio_runner: Harness) -> None:
    if dneio_runner.base == "native":
        pytest.skip("natively only dneio operations can be awaited")

    async def main(h: Harness) -> Any:
        if dneio_runner.base == "trio":
            import trio

            sleep: Any = trio.sleep
        elif dneio_runner.base == "twisted":
            from twisted.internet import reactor
            from twisted.internet.task import deferLater

            def sleep(seconds: float) -> Any:
                return deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]
        else:
            import asyncio

            sleep = asyncio.sleep

        async def nap(i: int) -> int:
            await sleep(0.001 * (3 - i))
            return i

        return await run_all(nap(0), nap(1), nap(2))

    assert dneio_runner.run(main) == (0, 1, 2)


def test_cancelled_caller_leaves_children_running(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")

    async def main(h: Harness) -> tuple[bool, list[str]]:
        ev = Event()
        done: list[str] = []

        async def child(name: str) -> None:
            await ev.wait()
            done.append(name)

        caller = h.spawn(lambda: run_all(child("a"), child("b")))
        await h.settle()
        caller.cancel()
        await h.settle()
        ev.set()
        await h.settle()
        return caller.cancelled, done

    assert dneio_runner.run(main) == (True, ["a", "b"])


def test_error_of_orphaned_children_surfaces_in_the_resumer(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")

    async def main(h: Harness) -> str:
        ev = Event()

        async def child() -> None:
            await ev.wait()
            raise OSError("orphan failed")

        caller = h.spawn(lambda: run_all(child()))
        await h.settle()
        caller.cancel()
        await h.settle()
        # The child runs natively, resumed by set(): its error surfaces there.
        with pytest.raises(OSError, match="orphan failed"):
            ev.set()
        return "reported"

    assert dneio_runner.run(main) == "reported"


def test_run_all_native_without_suspension() -> None:
    async def three() -> int:
        return 3

    assert reset(run_all(three(), three())) == (3, 3)

"""Races, failing callbacks and other ways a continuation can be misused."""

from __future__ import annotations

import gc
import inspect
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import outcome
import pytest

from dneio import ContinuationDropped, shift
from dneio import reset as dneio_reset
from dneio._hosts import _parking as hc
from dneio.testing import ALL_RUNNERS, Harness

HOSTS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if n != "native"))


def _slow_claim_tracer() -> Any:
    """A tracer that pauses a thread inside the claim, so the other one races it.

    With the compiled core the claim is C code, atomic under the GIL, and no
    tracer can pause it: then the threads switch as often as CPython allows
    instead (see the test).
    """
    if hc.SlotCore is not hc.PySlotCore:
        return None
    code = hc.PySlotCore.resume.__code__
    lines, first = inspect.getsourcelines(hc.PySlotCore.resume)
    # The first line after the state was read, under the claim lock.
    pause = first + next(i for i, line in enumerate(lines) if "if state == PARKED" in line)

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == pause:
            time.sleep(0.02)
        return local

    def global_(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    return global_


async def _settle_until_done(h: Harness, tasks: list[Any], tries: int, pause: float) -> None:
    """Let the host run until every task is done (resumptions from threads hop to it)."""
    for _ in range(tries):
        await h.settle()
        if all(t.done for t in tasks):
            break
        await _sleep(h, pause)
    for t in tasks:
        t.get()


@HOSTS
def test_two_threads_cannot_both_resume(
    dneio_runner: Harness, run_switching_often: Callable[[list[threading.Thread]], None]
) -> None:
    async def main(h: Harness) -> Any:
        parked: list[Any] = []
        got: list[Any] = []

        async def waiter() -> None:
            got.append(await shift(parked.append))

        t = h.spawn(waiter)
        await h.settle()
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def racer(value: str) -> None:
            sys.settrace(_slow_claim_tracer())
            barrier.wait()
            try:
                parked[0].send(value)
                outcomes.append("sent")
            except RuntimeError:
                outcomes.append("refused")
            finally:
                sys.settrace(None)

        threads = [threading.Thread(target=racer, args=(v,)) for v in "xy"]
        run_switching_often(threads)
        await _settle_until_done(h, [t], 50, 0.01)
        return sorted(outcomes), len(got)

    assert dneio_runner.run(main) == (["refused", "sent"], 1)


@HOSTS
def test_many_threads_race_to_resume_and_exactly_one_wins_each_time(
    dneio_runner: Harness, run_switching_often: Callable[[list[threading.Thread]], None]
) -> None:
    """Many parked tasks, each resumed at once from three threads: one claim wins per task.

    The claim is C code with the compiled core and takes a lock on the
    pure-Python path; either way no value may be delivered twice or lost.
    Threads switch as often as CPython allows while they race.
    """
    tasks_per_round, rounds = 20, 5

    async def main(h: Harness) -> Any:
        delivered: list[tuple[int, str]] = []
        results: list[str] = []
        for r in range(rounds):
            parked: list[Any] = []

            async def waiter(i: int) -> None:
                delivered.append((i, await shift(parked.append)))

            spawned = [h.spawn(lambda i=r * 100 + n: waiter(i)) for n in range(tasks_per_round)]
            await h.settle()
            assert len(parked) == tasks_per_round
            barrier = threading.Barrier(3)
            lock = threading.Lock()

            def racer(name: str) -> None:
                barrier.wait()
                for k in parked:
                    try:
                        k.send(name)
                        outcome = "sent"
                    except RuntimeError:
                        outcome = "refused"
                    with lock:
                        results.append(outcome)

            threads = [threading.Thread(target=racer, args=(v,)) for v in "xyz"]
            run_switching_often(threads)
            await _settle_until_done(h, spawned, 200, 0.005)
        return delivered, results

    delivered, results = dneio_runner.run(main)
    total = tasks_per_round * rounds
    assert sorted(i for i, _ in delivered) == sorted(
        r * 100 + n for r in range(rounds) for n in range(tasks_per_round)
    )
    assert all(v in "xyz" for _, v in delivered)
    assert results.count("sent") == total
    assert results.count("refused") == 2 * total


@HOSTS
def test_failing_cancel_callback_is_reported_and_cancellation_goes_on(
    dneio_runner: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reported.append(args.exc_value))

    async def main(h: Harness) -> Any:
        if h.base == "asyncio":
            import asyncio

            asyncio.get_running_loop().set_exception_handler(
                lambda loop, ctx: reported.append(ctx["exception"])
            )
        if h.base == "twisted":
            from twisted.logger import globalLogPublisher

            def observe(event: dict[str, Any]) -> None:
                if "log_failure" in event:
                    reported.append(event["log_failure"].value)

            globalLogPublisher.addObserver(observe)
            cleanups.append(lambda: globalLogPublisher.removeObserver(observe))
        parked: list[Any] = []
        log: list[str] = []

        async def waiter() -> None:
            await shift(parked.append)

        t = h.spawn(waiter)
        await h.settle()
        parked[0].on_cancel(lambda: 1 / 0)
        parked[0].on_cancel(lambda: log.append("second callback"))
        t.cancel()
        await h.settle()
        assert t.done and t.cancelled
        return log

    cleanups: list[Any] = []
    try:
        assert dneio_runner.run(main) == ["second callback"]
    finally:
        for cleanup in cleanups:
            cleanup()
    assert [type(e) for e in reported] == [ZeroDivisionError]


@HOSTS
def test_dropped_continuation_noticed_even_if_its_callbacks_refer_to_it(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> Any:
        async def waiter() -> None:
            def func(k: Any) -> None:
                k.on_cancel(lambda: print("never", k))

            await shift(func)

        t = h.spawn(waiter)
        await h.settle()
        gc.collect()
        for _ in range(20):
            await h.settle()
            if t.done:
                break
            await _sleep(h, 0.01)
        with pytest.raises(ContinuationDropped):
            t.get()
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_continuations_resumed_and_dropped_in_turn_each_do_what_they_should(
    dneio_runner: Harness,
) -> None:
    """Continuations released after a resumption are reused: a dropped one still wakes its task."""

    async def main(h: Harness) -> Any:
        kept: list[Any] = []
        outcomes: list[Any] = []

        async def task(i: int) -> None:
            try:
                if i % 3 == 0:
                    outcomes.append(await shift(lambda k: k(i)))
                elif i % 3 == 1:
                    outcomes.append(await shift(lambda k: None))  # dropped inside func
                else:
                    outcomes.append(await shift(kept.append))  # dropped once parked
            except ContinuationDropped:
                outcomes.append(("dropped", i))

        for round_ in range(40):
            handles = [h.spawn(task, round_ * 3 + j) for j in range(3)]
            await h.settle()
            kept.clear()
            gc.collect()
            for _ in range(50):
                await h.settle()
                if all(t.done for t in handles):
                    break
                await _sleep(h, 0.001)
            for t in handles:
                t.get()
        return outcomes

    outcomes = dneio_runner.run(main)
    expected = []
    for i in range(120):
        expected.append(i if i % 3 == 0 else ("dropped", i))
    assert sorted(outcomes, key=lambda o: o if isinstance(o, int) else o[1]) == expected


@pytest.mark.dneio_runners("asyncio", "asyncio-pytask", "uvloop", "asyncio-deferred")
def test_late_cancellation_stays_inside_the_timeout_that_asked_for_it(
    dneio_runner: Harness,
) -> None:
    """A shielded wait outlives its timeout: the value arrives, nothing leaks past the block."""
    import asyncio

    async def main(h: Harness) -> Any:
        box: list[Any] = []

        def park_shielded(k: Any) -> None:
            k.shield()
            box.append(k)

        async def resume_later() -> None:
            await asyncio.sleep(0.03)
            box[-1].send("value")

        h.spawn(resume_later)
        async with asyncio.timeout(0.01):
            got = await shift(park_shielded)
        await asyncio.sleep(0.01)  # no stray CancelledError here
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0

        async def shielded_op() -> Any:
            h.spawn(resume_later)
            return await shift(park_shielded)

        # wait_for gives the shielded operation's value, not a TimeoutError.
        got2 = await asyncio.wait_for(shielded_op(), 0.01)
        return got, got2

    assert dneio_runner.run(main) == ("value", "value")


@pytest.mark.dneio_runners("asyncio-deferred")
def test_deferred_wake_bookkeeping_does_not_keep_loops_alive(dneio_runner: Harness) -> None:
    from dneio._hosts._asyncio import _runner as _asyncio_runner

    async def main(h: Harness) -> None:
        parked: list[Any] = []

        async def waiter() -> None:
            await shift(parked.append)

        h.spawn(waiter)
        await h.settle()
        parked[0].send(None)
        await h.settle()

    for _ in range(5):
        dneio_runner.run(main)
    assert _asyncio_runner._deferred_wakes == {}


async def _sleep(h: Harness, seconds: float) -> None:
    if h.base == "trio":
        import trio

        await trio.sleep(seconds)
    elif h.base == "twisted":
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await deferLater(reactor, seconds, lambda: None)  # type: ignore[arg-type]
    else:
        import asyncio

        await asyncio.sleep(seconds)


def test_errors_of_queued_resumptions_are_all_reported() -> None:
    from dneio._core._impl import ThreadState  # the core's own: compiled or pure
    from dneio._core._queue import drain

    class Failing:
        def __init__(self, i: int) -> None:
            self.i = i

        def _deliver(self, st: Any, is_exc: bool, value: Any) -> None:
            raise KeyError(self.i)

    st = ThreadState()
    for i in range(3):
        st.queue.append((Failing(i), False, None))
    with pytest.raises(KeyError) as info:
        drain(st)
    assert info.value.args == (0,)
    assert info.value.__notes__ == [
        "a queued resumption raised too: KeyError(1)",
        "a queued resumption raised too: KeyError(2)",
    ]
    assert not st.queue and st.depth == 0

    # Already failing: the queued errors become notes of the error in flight.
    for i in range(15):
        st.queue.append((Failing(i), False, None))
    in_flight = ValueError("in flight")
    drain(st, in_flight)
    notes = in_flight.__notes__
    assert len(notes) == 11 and notes[0].endswith("KeyError(0)")
    assert notes[-1] == "... and 5 more queued resumptions raised"


@pytest.mark.parametrize("how", ["send", "throw"])
def test_a_spent_continuation_says_so_after_its_run_is_over(
    dneio_runner: Harness, how: str
) -> None:
    # A callback API that calls back twice, the second time after the event
    # loop (or trio run) is gone: the second call is the program's mistake,
    # and the error must name it, not the loop that is gone.
    from dneio import ContinuationSpentError

    kept: list[Any] = []

    async def main(h: Harness) -> Any:
        async def resumer() -> None:
            kept[0].send("first")

        def func(k: Any) -> None:
            kept.append(k)
            h.spawn(resumer)

        return await shift(func)

    assert dneio_runner.run(main) == "first"
    (k,) = kept
    with pytest.raises(ContinuationSpentError):
        if how == "send":
            k.send("again")
        else:
            k.throw(KeyError("again"))


class _Box:
    """Something a program keeps a continuation in."""

    k: Any = None


def _cycles_through_kept_continuations_are_collected(h: Harness, resume: str) -> None:
    """A continuation (and its wait) kept after the shift is seen by the collector.

    The task is resumed with the box that keeps its continuation: box -> k ->
    the wait -> its value, the box.  Each such shift follows one whose
    continuation nobody kept, whose objects the next shift may reuse.
    """

    async def main(h: Harness) -> Any:
        boxes: list[Any] = []
        for _ in range(5):
            assert await shift(lambda k: k.send(7)) == 7  # nobody keeps this one
            box = _Box()
            parked: list[Any] = []

            def func(k: Any, box: _Box = box, parked: list[Any] = parked) -> None:
                box.k = k
                if resume == "at once":
                    k.send(box)
                else:
                    parked.append(k)

            t = h.spawn(_resume_later, h, parked, box) if resume == "later" else None
            got = await shift(func)
            assert got is box
            if t is not None:
                await h.settle()
                t.get()
            boxes.append(weakref.ref(box))
        return boxes

    boxes = h.run(main)
    gc.collect()
    assert [ref() for ref in boxes] == [None] * 5


async def _resume_later(h: Harness, parked: list[Any], box: _Box) -> None:
    while not parked:
        await _sleep(h, 0.001)
    parked.pop().send(box)


@pytest.mark.dneio_runners(*ALL_RUNNERS)
def test_a_cycle_through_a_continuation_resumed_in_its_func_is_collected(
    dneio_runner: Harness,
) -> None:
    _cycles_through_kept_continuations_are_collected(dneio_runner, "at once")


@HOSTS
def test_a_cycle_through_a_continuation_resumed_later_is_collected(
    dneio_runner: Harness,
) -> None:
    _cycles_through_kept_continuations_are_collected(dneio_runner, "later")


@pytest.mark.dneio_runners(*ALL_RUNNERS)
@pytest.mark.parametrize("how", ["throw at once", "resume", "func raises"])
def test_a_stop_iteration_thrown_in_is_not_taken_for_a_return(
    dneio_runner: Harness, how: str
) -> None:
    """StopIteration cannot come out of an await as itself (it would read as a return).

    It comes out as RuntimeError whose cause it is, as PEP 479 has it for
    generators, on every core; StopAsyncIteration (which ends an async for)
    comes out as itself.
    """
    _stop_iteration_comes_out_as_an_error(dneio_runner, how)


@HOSTS
def test_a_stop_iteration_thrown_into_a_parked_host_task_is_not_taken_for_a_return(
    dneio_runner: Harness,
) -> None:
    _stop_iteration_comes_out_as_an_error(dneio_runner, "throw later")


def _stop_iteration_comes_out_as_an_error(dneio_runner: Harness, how: str) -> None:
    async def main(h: Harness) -> list[Any]:
        seen: list[Any] = []
        for exc in (StopIteration("end"), StopAsyncIteration("end")):
            parked: list[Any] = []

            def func(k: Any, exc: BaseException = exc, parked: list[Any] = parked) -> None:
                if how == "throw at once":
                    k.throw(exc)
                elif how == "resume":
                    k.resume(outcome.Error(exc))
                elif how == "func raises":
                    raise exc
                else:
                    parked.append(k)

            t = h.spawn(_throw_later, h, parked, exc) if how == "throw later" else None
            try:
                got = await shift(func)
            except RuntimeError as e:
                seen.append(("RuntimeError", e.__cause__ is exc))
            except BaseException as e:
                seen.append((type(e).__name__, e is exc))
            else:
                seen.append(("returned", got))
            if t is not None:
                await h.settle()
                t.get()
        return seen

    assert dneio_runner.run(main) == [("RuntimeError", True), ("StopAsyncIteration", True)]


async def _throw_later(h: Harness, parked: list[Any], exc: BaseException) -> None:
    while not parked:
        await _sleep(h, 0.001)
    parked.pop().throw(exc)


def test_a_value_is_not_kept_while_another_thread_runs_native_code() -> None:
    """The value an asyncio task is resumed with goes when the task lets it go.

    Another thread is inside a native step all the while (on 3.12 and later
    such a step empties what it used when it ends; what the task used must
    not wait for it).
    """
    import asyncio

    class Value:
        pass

    inside = threading.Event()
    leave = threading.Event()

    async def native() -> None:
        inside.set()
        leave.wait(10)

    thread = threading.Thread(target=lambda: dneio_reset(native()))
    thread.start()
    try:
        assert inside.wait(10)

        async def main() -> list[bool]:
            alive = []
            for _ in range(3):
                got = await shift(lambda k: k.send(Value()))
                ref = weakref.ref(got)
                del got
                alive.append(ref() is not None)
            return alive

        assert asyncio.run(main()) == [False, False, False]
    finally:
        leave.set()
        thread.join()


def test_a_stop_iteration_taken_by_hand_pickles_as_one() -> None:
    """Driving the shift by hand gives a StopIteration carrying the value, as any await would."""
    import asyncio
    import pickle

    async def main() -> Any:
        step = shift(lambda k: k.send([5])).__await__()
        with pytest.raises(StopIteration) as caught:
            step.send(None)
        return pickle.loads(pickle.dumps(caught.value)).value

    assert asyncio.run(main()) == [5]

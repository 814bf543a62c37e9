"""shift and continuations behave the same on every runner (SPEC sections 2-3)."""

from __future__ import annotations

import gc
from typing import Any

import outcome
import pytest

import dneio
from dneio import ContinuationDropped, ContinuationSpentError, shift
from dneio.testing import ALL_RUNNERS, Harness

#: Runners that resume synchronously (the deferred modes are tested in test_fallback).
SYNCHRONOUS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if not n.endswith("deferred")))


def test_resume_inside_func_does_not_suspend(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        other_ran = []

        async def other() -> None:
            if h.base == "twisted":
                # Twisted runs a new coroutine at once, up to its first wait:
                # make it wait for the reactor's next turn.
                from twisted.internet import reactor
                from twisted.internet.task import deferLater

                await deferLater(reactor, 0, lambda: None)  # type: ignore[arg-type]
            other_ran.append(True)

        if h.base != "native":
            # Ready to run: it would run if the shift below suspended the task.
            h.spawn(other)
        values = [await shift(lambda k: k.send(i)) for i in range(100)]
        ran_before = list(other_ran)
        await h.settle()
        return values, ran_before

    values, ran_before = dneio_runner.run(main)
    assert values == list(range(100))
    assert ran_before == []


def test_func_raising_before_resume_raises_at_await(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        kept = []

        def func(k: Any) -> None:
            kept.append(k)
            raise LookupError("func failed")

        with pytest.raises(LookupError, match="func failed"):
            await shift(func)
        with pytest.raises(ContinuationSpentError):
            kept[0].send(1)
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_func_raising_before_resume_tells_whoever_holds_k(dneio_runner: Harness) -> None:
    # A func that registers k and then fails (a callback API that takes the
    # callback, then raises): the wait is over without a value, and the
    # registry learns it through k's on_cancel callbacks, as from a
    # cancellation, so it drops k instead of resuming a spent continuation.
    async def main(h: Harness) -> Any:
        registry: list[Any] = []
        log: list[Any] = []

        def func(k: Any) -> None:
            registry.append(k)
            k.on_cancel(lambda: (log.append("first"), registry.remove(k)))
            k.on_cancel(lambda: log.append("second"))
            raise LookupError("func failed")

        with pytest.raises(LookupError, match="func failed"):
            await shift(func)
        return log, registry

    assert dneio_runner.run(main) == (["first", "second"], [])


def test_a_stop_raised_by_such_a_callback_comes_out_of_the_await(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []

        def stop() -> None:
            raise KeyboardInterrupt("from a callback")

        def func(k: Any) -> None:
            k.on_cancel(stop)
            k.on_cancel(lambda: log.append("still run"))
            raise LookupError("func failed")

        try:
            await shift(func)
        except KeyboardInterrupt as exc:
            context = exc.__context__
            return log, str(exc), type(context).__name__
        return log, None, None

    assert dneio_runner.run(main) == (["still run"], "from a callback", "LookupError")


@SYNCHRONOUS
def test_send_runs_the_coroutine_to_its_next_suspension(dneio_runner: Harness) -> None:
    """Synchronous resumption: when send returns, the task has already run."""

    async def main(h: Harness) -> list[Any]:
        box: list[Any] = []
        log: list[Any] = []

        async def task() -> None:
            for _ in range(3):
                v = await shift(box.append)
                log.append(("got", v))
                log.append(("still running", v))
            log.append("end")

        h.spawn(task)
        await h.settle()
        checks = []
        for i in range(3):
            k = box.pop()
            k.send(i)
            # No settle: the task ran inside send().
            checks.append(list(log))
        return checks

    checks = dneio_runner.run(main)
    assert checks[0] == [("got", 0), ("still running", 0)]
    assert checks[2][-1] == "end"


def test_single_shot_even_when_parked_at_a_later_shift(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: list[Any] = []
        log: list[Any] = []

        async def task() -> None:
            log.append(await shift(box.append))
            log.append(await shift(box.append))

        t = h.spawn(task)
        await h.settle()
        first = box.pop()
        first.send("a")
        await h.settle()
        assert log == ["a"] and len(box) == 1
        with pytest.raises(ContinuationSpentError):
            first.send("again")
        with pytest.raises(ContinuationSpentError):
            first.throw(ValueError())
        await h.settle()
        assert log == ["a"]
        box.pop().send("b")
        await h.settle()
        t.get()
        return log

    assert dneio_runner.run(main) == ["a", "b"]


def test_throw_resume_and_call_deliver(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: list[Any] = []
        results: list[Any] = []

        async def task() -> None:
            for _ in range(4):
                try:
                    results.append(await shift(box.append))
                except ArithmeticError as exc:
                    results.append(repr(exc))

        h.spawn(task)
        for resume in (
            lambda k: k.send(1),
            lambda k: k.throw(ZeroDivisionError("z")),
            lambda k: k.resume(outcome.Value(3)),
            lambda k: k(4),
        ):
            await h.settle()
            resume(box.pop())
        await h.settle()
        return results

    assert dneio_runner.run(main) == [1, "ZeroDivisionError('z')", 3, 4]


def test_func_raising_after_resuming_k(dneio_runner: Harness) -> None:
    """A func that resumes k and then raises: natively the coroutine goes on
    with the value and the error reaches whoever drives it (here the run);
    under a host the error is raised at the await instead, and k is spent."""
    seen: list[Any] = []
    kept: list[Any] = []

    def func(k: Any) -> None:
        kept.append(k)
        k.send("v")
        raise KeyError("late")

    async def main(h: Harness) -> str:
        try:
            seen.append(("value", await shift(func)))
        except KeyError as exc:
            seen.append(("raised", exc.args[0]))
        with pytest.raises(ContinuationSpentError):
            kept[0].send("again")
        return "ended"

    if dneio_runner.base == "native":
        with pytest.raises(KeyError, match="late"):
            dneio_runner.run(main)
        assert seen == [("value", "v")]
    else:
        assert dneio_runner.run(main) == "ended"
        assert seen == [("raised", "late")]


def test_exception_in_task_after_resume(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: list[Any] = []

        async def task() -> None:
            await shift(box.append)
            raise OSError("after resume")

        t = h.spawn(task)
        await h.settle()
        try:
            box.pop().send(None)
        except OSError:
            # Natively the resumer receives the coroutine's exception.
            assert h.base == "native"
        await h.settle()
        assert t.done
        with pytest.raises(OSError, match="after resume"):
            t.get()
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_current_runner_and_trio_check(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        seen = [dneio.current_runner(), dneio.is_running_directly_under_trio()]

        async def native_part() -> None:
            seen.extend([dneio.current_runner(), dneio.is_running_directly_under_trio()])

        dneio.reset(native_part())
        return seen

    expected_host = dneio_runner.base
    assert dneio_runner.run(main) == [expected_host, expected_host == "trio", "native", False]


def test_dropped_continuation_does_not_leave_the_task_hanging(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log = []
        box: list[Any] = []

        async def never_kept() -> None:
            try:
                await shift(lambda k: None)
            finally:
                log.append("finally 1")

        async def kept_then_dropped() -> None:
            try:
                await shift(box.append)
            finally:
                log.append("finally 2")

        t1 = h.spawn(never_kept)
        t2 = h.spawn(kept_then_dropped)
        await h.settle()
        box.clear()
        gc.collect()
        await h.settle()
        assert sorted(log) == ["finally 1", "finally 2"]
        if h.base != "native":
            for t in (t1, t2):
                with pytest.raises(ContinuationDropped, match="dropped without being resumed"):
                    t.get()
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_resumed_from_inside_another_coroutine(dneio_runner: Harness) -> None:
    """A task resumes another from inside its own code, in a chain."""

    async def main(h: Harness) -> Any:
        order: list[int] = []
        ks: dict[int, Any] = {}

        async def link(i: int) -> None:
            await shift(lambda k: ks.__setitem__(i, k))
            order.append(i + 1)
            if i + 1 in ks:
                ks.pop(i + 1).send(None)
            order.append(-(i + 1))

        for i in range(10):
            h.spawn(link, i)
        await h.settle()
        ks.pop(0).send(None)
        await h.settle()
        return order

    order = dneio_runner.run(main)
    if dneio_runner.name.endswith("deferred"):
        assert sorted(order) == sorted(list(range(1, 11)) + [-i for i in range(1, 11)])
        assert [i for i in order if i > 0] == list(range(1, 11))
    else:
        assert order == list(range(1, 11)) + [-i for i in reversed(range(1, 11))]

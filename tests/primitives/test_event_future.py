"""Event and Future on every runner: fan-out order, close, several waiters, cancellation."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from typing import Any

import outcome
import pytest

from dneio import ClosedError, Event, Future, InvalidStateError, first_of, reset, shift
from dneio.testing import Harness


async def spawn_each(h: Harness, fn: Any, args: Any) -> list[Any]:
    # Settle after each spawn: trio starts new tasks in random order.
    handles = []
    for arg in args:
        handles.append(h.spawn(fn, arg))
        await h.settle()
    return handles


# -- Event ----------------------------------------------------------------------------


def test_set_wakes_every_waiter_in_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[int], bool, bool]:
        ev = Event()
        woken: list[int] = []

        async def waiter(i: int) -> None:
            await ev.wait()
            woken.append(i)

        await spawn_each(h, waiter, range(5))
        assert woken == []
        before = ev.is_set()
        ev.set()
        ev.set()  # a second set does nothing
        await h.settle()
        await ev.wait()  # already set: returns at once
        return woken, before, ev.is_set()

    assert dneio_runner.run(main) == ([0, 1, 2, 3, 4], False, True)


def test_set_runs_each_waiter_before_set_returns(dneio_runner: Harness) -> None:
    if dneio_runner.name.endswith("deferred"):
        pytest.skip("the deferred modes wake tasks from the loop, after set() returns")

    async def main(h: Harness) -> list[int]:
        ev = Event()
        woken: list[int] = []

        async def waiter(i: int) -> None:
            await ev.wait()
            woken.append(i)

        await spawn_each(h, waiter, range(3))
        ev.set()
        return list(woken)

    assert dneio_runner.run(main) == [0, 1, 2]


def test_close_fails_waiters_and_later_waits(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[str], bool]:
        ev = Event()
        waiters = await spawn_each(h, lambda _: ev.wait(), range(2))
        ev.close(ConnectionError("peer went away"))
        await h.settle()
        errors = []
        for w in waiters:
            with pytest.raises(ConnectionError) as info:
                w.get()
            errors.append(str(info.value))
        with pytest.raises(ConnectionError):
            await ev.wait()
        ev.set()  # close came first: set does nothing
        return errors, ev.is_set()

    assert dneio_runner.run(main) == (["peer went away"] * 2, False)


def test_close_without_exception_raises_closed_error(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> str:
        ev = Event()
        ev.close()
        with pytest.raises(ClosedError):
            await ev.wait()
        return repr(ev)

    assert dneio_runner.run(main) == "<Event closed>"


def test_close_after_set_does_nothing(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> bool:
        ev = Event()
        ev.set()
        ev.close()
        await ev.wait()
        return ev.is_set()

    assert dneio_runner.run(main) is True


def test_cancelled_event_waiter_is_skipped(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")

    async def main(h: Harness) -> tuple[list[int], bool]:
        ev = Event()
        woken: list[int] = []

        async def waiter(i: int) -> None:
            await ev.wait()
            woken.append(i)

        handles = await spawn_each(h, waiter, range(40))
        for i, handle in enumerate(handles):
            if i % 4:
                handle.cancel()
        await h.settle()
        ev.set()
        await h.settle()
        return woken, all(handle.cancelled for i, handle in enumerate(handles) if i % 4)

    assert dneio_runner.run(main) == (list(range(0, 40, 4)), True)


def test_native_waiter_error_does_not_stop_the_fan_out() -> None:
    ev = Event()
    woken: list[str] = []

    async def bad() -> None:
        await ev.wait()
        raise ValueError("waiter failed")

    async def good() -> None:
        await ev.wait()
        woken.append("good")

    reset(bad())
    reset(good())
    with pytest.raises(ValueError, match="waiter failed"):
        ev.set()
    assert woken == ["good"]


# -- Future ---------------------------------------------------------------------------


def test_future_start_runs_at_once_and_serves_several_waiters(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[bool, list[Any], int]:
        gate = Event()
        started: list[str] = []

        async def compute() -> int:
            started.append("yes")
            await gate.wait()
            return 42

        fut = Future.start(compute())
        assert started == ["yes"]
        assert not fut.done()
        waiters = await spawn_each(h, lambda _: fut.get(), range(3))
        gate.set()
        await h.settle()
        return fut.done(), [w.get() for w in waiters], await fut.get()

    assert dneio_runner.run(main) == (True, [42, 42, 42], 42)


def test_future_start_accepts_a_callable_like_the_original(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> int:
        async def make() -> int:
            return 7

        return await Future.start(make).get()

    assert dneio_runner.run(main) == 7


def test_future_propagates_the_exception_to_every_waiter(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        gate = Event()

        async def compute() -> int:
            await gate.wait()
            raise LookupError("nothing here")

        fut = Future.start(compute())
        waiters = await spawn_each(h, lambda _: fut.get(), range(2))
        gate.set()
        await h.settle()
        out = []
        for w in waiters:
            with pytest.raises(LookupError) as info:
                w.get()
            out.append(str(info.value))
        with pytest.raises(LookupError):
            await fut.get()
        return out

    assert dneio_runner.run(main) == ["nothing here"] * 2


def test_future_set_directly(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[Any]:
        a: Future[int] = Future()
        b: Future[int] = Future()
        c: Future[int] = Future()
        wa = h.spawn(a.get)
        await h.settle()
        a.set(1)
        b.set_exception(KeyError("b"))
        c.set_outcome(outcome.Value(3))
        with pytest.raises(InvalidStateError):
            a.set(2)
        with pytest.raises(TypeError):
            c.set_outcome(3)  # type: ignore[arg-type]
        with pytest.raises(KeyError):
            await b.get()
        await h.settle()
        return [wa.get(), await a.get(), await c.get(), repr(a)]

    assert dneio_runner.run(main) == [1, 1, 3, "<Future returned 1>"]


def test_future_get_cb_before_and_after_the_result(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[int]:
        fut: Future[int] = Future()
        early = h.spawn(shift, fut.get_cb)
        await h.settle()
        fut.set(5)
        await h.settle()
        return [early.get(), await shift(fut.get_cb)]

    assert dneio_runner.run(main) == [5, 5]


def test_cancelled_future_waiter_leaves_the_value_for_others(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")

    async def main(h: Harness) -> tuple[bool, Any]:
        fut: Future[str] = Future()
        first, second = await spawn_each(h, lambda _: fut.get(), range(2))
        first.cancel()
        await h.settle()
        fut.set("value")
        await h.settle()
        return first.cancelled, second.get()

    assert dneio_runner.run(main) == (True, "value")


def test_future_start_of_a_host_awaitable_is_adopted(dneio_runner: Harness) -> None:
    if dneio_runner.base == "native":
        pytest.skip("nothing to adopt it natively")

    async def main(h: Harness) -> str:
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

        async def slow() -> str:
            await sleep(0)
            return "slept"

        return await Future.start(slow()).get()  # type: ignore[no-any-return]

    assert dneio_runner.run(main) == "slept"


def test_native_future_of_a_foreign_awaitable_gets_type_error() -> None:
    class Foreign:
        def __await__(self) -> Any:
            yield "something dneio cannot serve"

    fut = Future.start(Foreign())
    assert fut.done()
    with pytest.raises(TypeError, match="cannot serve"):
        reset(fut.get())


# -- an error no one retrieves is reported, not lost -------------------------------------


def _collect_unraisable(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    reports: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reports.append)
    return reports


def test_an_error_left_in_a_dropped_future_is_reported(
    dneio_runner: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = _collect_unraisable(monkeypatch)

    async def job() -> None:
        raise ValueError("job failed")

    async def main(h: Harness) -> list[str]:
        kinds = []
        for how in ("start", "set_exception", "set_outcome", "retrieved", "waited", "cancel"):
            f: Future[Any] = Future.start(job) if how == "start" else Future()
            if how == "set_exception":
                f.set_exception(ValueError("set"))
            elif how == "set_outcome":
                f.set_outcome(outcome.Error(ValueError("outcome")))
            elif how == "retrieved":
                f.set_exception(ValueError("retrieved"))
                with pytest.raises(ValueError):
                    await f.get()
            elif how == "waited":
                w = h.spawn(f.get)
                await h.settle()
                f.set_exception(ValueError("waited"))
                await h.settle()
                with pytest.raises(ValueError):
                    w.get()
            elif how == "cancel":
                f.set_exception(KeyboardInterrupt())  # not an error: not reported
            del f
            gc.collect()
            kinds.append(how)
        return kinds

    dneio_runner.run(main)
    gc.collect()
    errors = [str(r.exc_value) for r in reports]
    assert errors == ["job failed", "set", "outcome"]
    assert all("never retrieved" in str(r.err_msg) for r in reports)


def test_an_error_whose_only_waiter_was_withdrawn_is_reported(
    dneio_runner: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter left before the error came (its first_of was won by another branch)."""
    reports = _collect_unraisable(monkeypatch)

    async def main(h: Harness) -> Any:
        f: Future[Any] = Future()
        won = await first_of(f.get_cb, lambda k: k.send("other"))
        f.set_exception(ValueError("withdrawn"))
        return won

    assert dneio_runner.run(main) == (1, "other")
    gc.collect()
    assert [str(r.exc_value) for r in reports] == ["withdrawn"]


def test_an_unretrieved_future_error_reaches_the_default_hook() -> None:
    code = textwrap.dedent(
        """
        import gc
        from dneio import Future

        async def job():
            raise ValueError("job failed")

        f = Future.start(job())
        del f
        gc.collect()
        print("done")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "done"
    assert "ValueError: job failed" in out.stderr
    assert "never retrieved" in out.stderr


@pytest.mark.parametrize("bad", [5, None, "text"])
def test_future_start_refuses_what_it_cannot_await(bad: Any) -> None:
    with pytest.raises(TypeError, match="awaitable"):
        Future.start(bad)


@pytest.mark.parametrize("bad", [ValueError, "shutting down", 3])
def test_closing_an_event_with_something_not_an_exception_is_refused(
    dneio_runner: Harness, bad: Any
) -> None:
    """The error comes at once, and the event is as it was: its waiter still wakes."""

    async def main(h: Harness) -> list[Any]:
        ev = Event()
        w = h.spawn(ev.wait)
        await h.settle()
        with pytest.raises(TypeError, match="exception instance"):
            ev.close(bad)
        assert not ev.is_set()
        ev.set()
        await h.settle()
        w.get()
        await ev.wait()
        closing = Event()
        c = h.spawn(closing.wait)
        await h.settle()
        closing.close(KeyError("closed"))
        await h.settle()
        with pytest.raises(KeyError):
            c.get()
        return [ev.is_set()]

    assert dneio_runner.run(main) == [True]


@pytest.mark.parametrize("bad", [ValueError, "failed"])
def test_future_set_exception_refuses_what_is_not_an_exception(bad: Any) -> None:
    f: Future[int] = Future()
    with pytest.raises(TypeError, match="exception instance"):
        f.set_exception(bad)
    assert not f.done()
    f.set(1)
    assert f.done()


def test_reporting_an_error_keeps_nothing_of_the_reporting_frames() -> None:
    """The first report (which learns the hook's argument type) leaves no frame alive."""
    code = textwrap.dedent(
        """
        import gc, sys, weakref
        sys.unraisablehook = lambda args: print("reported", args.exc_value)
        from dneio import Future

        class Big:
            pass

        def work():
            big = Big()
            ref = weakref.ref(big)
            f = Future()
            f.set_exception(ValueError("boom"))
            del f
            return ref

        for _ in range(2):
            ref = work()
            gc.collect()
            print("alive" if ref() is not None else "freed")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["reported", "boom", "freed", "reported", "boom", "freed"]

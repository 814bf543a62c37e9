"""shift/reset semantics of the native runner (SPEC section 2)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import outcome
import pytest

import dneio
from dneio import (
    AnsweringContinuation,
    Continuation,
    ContinuationSpentError,
    CoroutineClosedError,
    reset,
    shift,
)


async def _two_shifts(log: list[Any]) -> str:
    a = await shift(lambda k: ("first answer", k))
    log.append(a)
    b = await shift(lambda k: ("second answer", k))
    log.append(b)
    return "returned"


def test_reset_returns_answers_then_return_value() -> None:
    log: list[Any] = []
    answer, k = reset(_two_shifts(log))
    assert answer == "first answer" and log == []
    answer2, k2 = k.send(1)
    assert answer2 == "second answer" and log == [1]
    assert k2.send(2) == "returned"
    assert log == [1, 2]


def test_reset_of_finished_coroutine_returns_its_value() -> None:
    async def f() -> int:
        return 42

    assert reset(f()) == 42


def test_resume_in_place_returns_return_value() -> None:
    async def f() -> str:
        x = await shift(lambda k: k.send(5))
        return f"got {x}"

    assert reset(f()) == "got 5"


def test_exception_from_coroutine_propagates_out_of_reset_and_send() -> None:
    async def f() -> None:
        await shift(lambda k: k)
        raise ValueError("boom")

    k = reset(f())
    with pytest.raises(ValueError, match="boom"):
        k.send(None)


def test_reset_rejects_non_coroutines_before_running_anything() -> None:
    ran = []

    async def f() -> None:
        ran.append(1)

    with pytest.raises(TypeError, match=r"call the async function"):
        reset(f)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="coroutine object"):
        reset(42)  # type: ignore[arg-type]
    assert ran == []


def test_reset_of_a_coroutine_already_started_is_refused_and_runs_nothing() -> None:
    log: list[str] = []
    ks: list[Any] = []

    async def f() -> str:
        log.append("start")
        await shift(ks.append)
        log.append("resumed")
        return "done"

    coro = f()
    reset(coro)
    with pytest.raises(RuntimeError, match=r"f\(\) was started already.*k\.send.*nothing was run"):
        reset(coro)
    assert log == ["start"]
    assert ks[0].send("value") == "done"
    assert log == ["start", "resumed"]
    with pytest.raises(RuntimeError, match=r"already finished.*reset\(f\(\)\).*nothing was run"):
        reset(coro)

    async def itself() -> None:
        reset(me)

    me = itself()
    with pytest.raises(RuntimeError, match="running right now"):
        reset(me)


def test_reset_accepts_other_kinds_of_coroutines() -> None:
    """A coroutine that is not a CoroutineType (Cython's, say) runs as well, in its own context."""
    import collections.abc
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    ks: list[Any] = []

    async def body() -> str:
        var.set("inside")
        got = await shift(ks.append)
        return f"{got} {var.get()}"

    class Other(collections.abc.Coroutine):  # type: ignore[type-arg]
        def __init__(self) -> None:
            self._inner = body()

        def send(self, value: Any) -> Any:
            return self._inner.send(value)

        def throw(self, *args: Any) -> Any:
            return self._inner.throw(*args)

        def close(self) -> None:
            self._inner.close()

        def __await__(self) -> Any:
            return self._inner.__await__()

    reset(Other())
    assert var.get() == "unset"
    assert ks[0].send("got") == "got inside"


def test_awaiting_the_same_shift_or_request_twice_raises() -> None:
    queue: dneio.RequestQueue[int, int] = dneio.RequestQueue()
    served: list[int] = []

    async def server() -> None:
        while True:
            val, k = await queue.get_one()
            served.append(val)
            k.send(val)

    reset(server())

    results: list[Any] = []

    async def twice(awaitable: Any) -> None:
        results.append(await awaitable)
        with pytest.raises(RuntimeError, match="already awaited"):
            await awaitable

    reset(twice(shift(lambda k: k.send(7))))
    reset(twice(queue.request(1)))
    assert results == [7, 1]
    assert served == [1]  # the second await made no request


def test_shift_without_any_runner_says_how_to_fix_it() -> None:
    coro = shift(lambda k: None)
    with pytest.raises(RuntimeError, match=r"dneio\.reset.*trio.*asyncio"):
        coro.send(None)


def test_shift_rejects_non_callable() -> None:
    async def f() -> str:
        with pytest.raises(TypeError, match="function that accepts a continuation"):
            await shift(42)  # type: ignore[arg-type]
        return "ok"

    assert reset(f()) == "ok"


def test_func_raising_before_resume_raises_at_the_await_and_spends_k() -> None:
    kept: list[Any] = []
    seen: list[BaseException] = []

    def func(k: Any) -> None:
        kept.append(k)
        raise KeyError("from func")

    async def f() -> str:
        try:
            await shift(func)
        except KeyError as exc:
            seen.append(exc)
        return "after"

    assert reset(f()) == "after"
    assert len(seen) == 1
    with pytest.raises(ContinuationSpentError):
        kept[0].send(None)


def test_func_raising_after_resume_propagates_to_the_resumer() -> None:
    log = []

    def func(k: Any) -> None:
        k.send("v")
        raise KeyError("late")

    async def f() -> None:
        log.append(await shift(func))
        await shift(lambda k: None)

    with pytest.raises(KeyError, match="late"):
        reset(f())
    assert log == ["v"]


def test_second_resume_raises_and_leaves_coroutine_untouched() -> None:
    log: list[Any] = []
    _, k = reset(_two_shifts(log))
    k.send("a")
    assert log == ["a"]
    with pytest.raises(ContinuationSpentError, match="only once"):
        k.send("b")
    with pytest.raises(ContinuationSpentError):
        k.throw(ValueError())
    assert log == ["a"]


def test_throw_resume_and_call() -> None:
    async def f() -> Any:
        results = []
        for _ in range(3):
            try:
                results.append(await shift(lambda k: k))
            except ValueError as exc:
                results.append(("error", str(exc)))
        return results

    k = reset(f())
    k = k.resume(outcome.Value(1))
    k = k.resume(outcome.Error(ValueError("x")))
    assert k(3) == [1, ("error", "x"), 3]


def test_resume_rejects_non_outcomes() -> None:
    async def f() -> None:
        await shift(lambda k: k)

    k = reset(f())
    with pytest.raises(TypeError, match=r"outcome\.Value or outcome\.Error"):
        k.resume(5)
    k.send(None)


def test_throw_rejects_non_exceptions_without_spending() -> None:
    async def f() -> Any:
        return await shift(lambda k: k)

    k = reset(f())
    with pytest.raises(TypeError, match="exception instance"):
        k.throw("nope")  # type: ignore[arg-type]
    assert k.send(9) == 9


def test_dropped_continuation_closes_the_coroutine() -> None:
    log = []

    async def f() -> None:
        try:
            await shift(lambda k: None)
            log.append("resumed?")
        finally:
            log.append("finally")

    assert reset(f()) is None
    assert log == ["finally"]


def test_continuation_types_work_at_run_time() -> None:
    alias = Continuation[int]
    assert alias.__origin__ is AnsweringContinuation  # type: ignore[attr-defined]
    assert AnsweringContinuation[int, str, bytes] is not None

    async def f() -> None:
        await shift(ks.append)

    ks: list[Any] = []
    reset(f())
    assert isinstance(ks[0], AnsweringContinuation)
    assert not ks[0].is_cancelled()
    ks[0].on_cancel(lambda: pytest.fail("only closing the coroutine cancels it"))
    ks[0].shield()
    ks[0].send(None)


def test_native_continuation_runs_on_the_resuming_thread() -> None:
    where = []

    async def f() -> None:
        await shift(ks.append)
        where.append(threading.get_ident())

    ks: list[Any] = []
    reset(f())
    t = threading.Thread(target=ks[0].send, args=(None,))
    t.start()
    t.join()
    assert where == [t.ident]


def test_foreign_await_without_host_is_a_typeerror_thrown_into_the_coroutine() -> None:
    import types

    log = []

    @types.coroutine
    def bare_yield() -> Any:
        yield "something foreign"

    async def f() -> None:
        try:
            await bare_yield()
        finally:
            log.append("finally")

    with pytest.raises(TypeError, match=r"f\(\) -> bare_yield\(\).*something foreign"):
        reset(f())
    assert log == ["finally"]


def test_foreign_await_can_be_caught_and_the_coroutine_continues() -> None:
    import asyncio

    async def f() -> str:
        try:
            await asyncio.sleep(0)
        except (TypeError, RuntimeError):
            pass
        return await shift(lambda k: k.send("carried on"))

    assert reset(f()) == "carried on"


def test_current_runner_natively() -> None:
    async def f() -> Any:
        return dneio.current_runner(), dneio.is_running_directly_under_trio()

    assert reset(f()) == ("native", False)
    assert dneio.current_runner() is None


class _Recording:
    """An awaitable that drives the awaitable it wraps by hand, as some
    tracing and adapter code does: it sees each value sent through it, and
    passes on ``transform(value)``."""

    def __init__(self, inner: Any, seen: list[Any], transform: Any) -> None:
        self.inner, self.seen, self.transform = inner, seen, transform

    def __await__(self) -> Any:
        it = self.inner.__await__()
        sent: Any = None
        while True:
            try:
                yielded = it.send(sent)
            except StopIteration as stop:
                return stop.value
            sent = yield yielded
            self.seen.append(sent)
            sent = self.transform(sent)


def test_a_value_sent_reaches_its_shift_through_every_kind_of_await() -> None:
    # The value k is resumed with goes down the await chain to the shift:
    # native coroutines and ``yield from`` pass it as it is; an awaitable
    # that drives its inner one by hand sees it and may change it.  Values
    # of several kinds, None among them.
    import types

    async def direct() -> Any:
        return await shift(lambda k: k)

    async def nested(levels: int) -> Any:
        if levels == 0:
            return await shift(lambda k: k)
        return await nested(levels - 1)

    @types.coroutine
    def generator_based() -> Any:
        return (yield from shift(lambda k: k).__await__())

    async def through_generator() -> Any:
        return await generator_based()

    seen: list[Any] = []

    async def recorded() -> Any:
        return await _Recording(shift(lambda k: k), seen, lambda v: ("changed", v))

    async def recorded_around_nested() -> Any:
        return await _Recording(nested(2), seen, lambda v: v)

    makers = [direct, lambda: nested(5), through_generator]
    for value in (1, None, "text", (2, 3), [4]):
        for make in makers:
            k = reset(make())
            assert k.send(value) is value
        seen.clear()
        assert reset(recorded()).send(value) == ("changed", value)
        assert seen == [value]
        seen.clear()
        assert reset(recorded_around_nested()).send(value) is value
        assert seen == [value]


def test_on_cancel_callbacks_are_released_when_k_is_resumed_with_a_value() -> None:
    import gc
    import weakref

    class Callback:
        def __init__(self) -> None:
            self.calls = 0

        def __call__(self) -> None:
            self.calls += 1

    got = []

    async def body() -> None:
        got.append(await shift(lambda k: k))
        got.append(await shift(lambda k: k))

    for value in ("value", None):
        got.clear()
        k = reset(body())
        cb = Callback()
        k.on_cancel(cb)
        ref = weakref.ref(cb)
        k2 = k.send(value)
        assert got == [value] and cb.calls == 0
        del cb, k
        gc.collect()
        assert ref() is None  # dropped with the resumption, not kept or leaked
        assert not k2.is_cancelled()
        k2.send(value)
        assert got == [value, value]


def test_a_resumption_the_entry_hook_refuses_leaves_the_wait_cancellable() -> None:
    # The hosts' entry hook runs before the coroutine does; if it fails, the
    # coroutine does not run, and its wait is as it was: once nothing can
    # resume it any more, its on_cancel callbacks run, once.
    import gc

    from dneio._core import _driver

    class Refusing:
        def enter(self, st: Any, coro: Any) -> Any:
            raise RuntimeError("refused")

        def leave(self, token: Any) -> None:
            raise AssertionError("never entered")

    got: list[Any] = []
    calls: list[str] = []

    async def body() -> None:
        got.append(await shift(lambda k: k))

    for value in ("value", None):
        k = reset(body())
        k.on_cancel(lambda: calls.append("cancelled"))
        before = _driver.entry_hook()
        _driver.set_entry_hook(Refusing())
        try:
            with pytest.raises(RuntimeError, match="refused"):
                k.send(value)
        finally:
            _driver.set_entry_hook(before)
        assert got == []
        del k
        gc.collect()
        assert calls == ["cancelled"]  # once, whenever the wait was let go
        calls.clear()


def test_a_resumption_failing_before_the_coroutine_runs_leaves_its_wait_cancellable() -> None:
    # k.send run inside the coroutine's own context (already entered) fails
    # before the coroutine runs; an entry hook that closes the coroutine
    # instead of entering it leaves nothing to run either.  Either way the
    # wait was not resumed: its on_cancel callbacks run once, and k says
    # its coroutine was closed.
    import gc

    from dneio import CoroutineClosedError
    from dneio._core import _driver

    class Closing:
        def enter(self, st: Any, coro: Any) -> Any:
            coro.close()
            return None

        def leave(self, token: Any) -> None:
            raise AssertionError("never entered")

    async def body(ks: list[Any]) -> None:
        await shift(ks.append)

    for way in ("context", "hook"):
        for value in ("value", None):
            ks: list[Any] = []
            calls: list[str] = []
            coro = body(ks)
            reset(coro)
            k = ks.pop()
            k.on_cancel(lambda: calls.append("cancelled"))
            if way == "context":
                del coro
                with pytest.raises(RuntimeError, match="already entered"):
                    k._ctx.run(k.send, value)
            else:
                before = _driver.entry_hook()
                _driver.set_entry_hook(Closing())
                try:
                    with pytest.raises(RuntimeError):
                        k.send(value)
                finally:
                    _driver.set_entry_hook(before)
                del coro
            gc.collect()
            assert calls == ["cancelled"], (way, value)
            assert k.is_cancelled()
            with pytest.raises(CoroutineClosedError):
                k.send(value)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_closing_runs_every_cancel_callback_and_raises_one_that_stops_the_program(
    stop: type[BaseException],
) -> None:
    """Closing a native coroutine parked in shift runs all its on_cancel
    callbacks even when one raises KeyboardInterrupt or SystemExit; that one
    is then raised in the coroutine, in place of GeneratorExit, and so out
    of close() unless the coroutine handles it.  Other errors are reported."""
    calls: list[str] = []
    seen: list[BaseException] = []
    raised = stop("from a callback")
    unraisable: list[Any] = []

    def stopping() -> None:
        calls.append("stopping")
        raise raised

    async def body(catch: bool) -> None:
        try:
            await shift(lambda k: k)
        except stop as exc:
            seen.append(exc)
            if not catch:
                raise
        finally:
            calls.append("finally")

    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        for catch in (False, True):
            coro = body(catch)
            k = reset(coro)
            k.on_cancel(lambda: calls.append("first"))
            k.on_cancel(stopping)
            k.on_cancel(lambda: 1 / 0)
            k.on_cancel(lambda: calls.append("last"))
            if catch:
                coro.close()
            else:
                with pytest.raises(stop) as info:
                    coro.close()
                assert info.value is raised
            assert calls == ["first", "stopping", "last", "finally"]
            assert seen == [raised]
            assert [type(u.exc_value) for u in unraisable] == [ZeroDivisionError]
            calls.clear()
            seen.clear()
            unraisable.clear()
            with pytest.raises(CoroutineClosedError):
                k.send(None)
    finally:
        sys.unraisablehook = old_hook

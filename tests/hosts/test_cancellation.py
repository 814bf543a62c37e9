"""Cancelling a task parked in shift (SPEC section 3)."""

from __future__ import annotations

from typing import Any

import pytest

from dneio import shift
from dneio.testing import ALL_RUNNERS, Harness

HOSTS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if n != "native"))


def _is_cancellation(exc: BaseException | None) -> bool:
    return type(exc).__name__ in ("Cancelled", "CancelledError")


@HOSTS
def test_cancel_while_parked(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: list[Any] = []
        calls: list[str] = []
        after: list[Any] = []

        async def waiter() -> None:
            after.append(await shift(box.append))

        t = h.spawn(waiter)
        await h.settle()
        k = box[0]
        k.on_cancel(lambda: calls.append("first"))
        k.on_cancel(lambda: calls.append("second"))
        assert not k.is_cancelled()
        t.cancel()
        if not h.name.startswith("anyio"):
            # The holder learns of it at once, before the canceller goes on.
            assert calls == ["first", "second"]
        await h.settle()
        assert calls == ["first", "second"]
        assert k.is_cancelled()
        assert t.done and t.cancelled and _is_cancellation(t.exception)
        # Registering afterwards calls back at once; resuming is a no-op.
        k.on_cancel(lambda: calls.append("late"))
        assert calls[-1] == "late"
        k.send("too late")
        k.send("still a no-op")
        await h.settle()
        assert after == []
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_shielded_continuation_delivers_value_then_cancellation(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: list[Any] = []
        log: list[Any] = []

        async def waiter() -> None:
            def func(k: Any) -> None:
                k.shield()
                box.append(k)

            log.append(await shift(func))
            log.append("before next checkpoint")
            await shift(box.append)  # next suspension point
            log.append("not reached")

        t = h.spawn(waiter)
        await h.settle()
        t.cancel()
        await h.settle()
        assert not t.done and not box[0].is_cancelled()
        box[0].send("the value")
        await h.settle()
        assert log == ["the value", "before next checkpoint"]
        assert t.done and _is_cancellation(t.exception)
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_cancel_after_resume_keeps_the_value(dneio_runner: Harness) -> None:
    """Resumed, then cancelled before it ran (deferred modes): the value still arrives."""

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        log: list[Any] = []

        async def waiter() -> None:
            log.append(await shift(box.append))
            await shift(box.append)

        t = h.spawn(waiter)
        await h.settle()
        box[0].send("v")
        t.cancel()
        await h.settle()
        assert log == ["v"]
        assert t.done and _is_cancellation(t.exception)
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_cancel_callbacks_may_resume_others_in_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        box: dict[str, Any] = {}
        log: list[Any] = []

        async def waiter(name: str) -> None:
            log.append((name, await shift(lambda k: box.__setitem__(name, k))))

        victim = h.spawn(waiter, "victim")
        for name in ("a", "b", "c"):
            h.spawn(waiter, name)
        await h.settle()

        def on_cancel() -> None:
            for name in ("c", "a", "b"):
                box[name].send(f"from callback to {name}")

        box["victim"].on_cancel(on_cancel)
        victim.cancel()
        await h.settle()
        assert log == [
            ("c", "from callback to c"),
            ("a", "from callback to a"),
            ("b", "from callback to b"),
        ]
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
@pytest.mark.parametrize("how", ["send", "throw", "inside func"])
def test_callbacks_of_a_resumed_wait_are_let_go_with_the_resumption(
    dneio_runner: Harness, how: str
) -> None:
    """A resumed wait's on_cancel callbacks can never be called: they are let
    go with the resumption, not kept for as long as whoever holds the spent
    continuation keeps it (a server logging its replies), and one registered
    afterwards is neither kept nor called."""
    import gc
    import weakref

    class Callback:
        def __init__(self, calls: list[str]) -> None:
            self.calls = calls

        def __call__(self) -> None:
            self.calls.append("called")

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        calls: list[str] = []
        refs: list[weakref.ref[Callback]] = []
        got: list[Any] = []

        def func(k: Any) -> None:
            box.append(k)
            callback = Callback(calls)
            refs.append(weakref.ref(callback))
            k.on_cancel(callback)
            if how == "inside func":
                k.send("early")

        async def waiter() -> None:
            try:
                got.append(await shift(func))
            except LookupError as exc:
                got.append(type(exc).__name__)

        t = h.spawn(waiter)
        await h.settle()
        k = box[0]
        if how == "send":
            k.send("value")
        elif how == "throw":
            k.throw(LookupError("thrown"))
        await h.settle()
        assert t.done and got in (["value"], ["LookupError"], ["early"])
        late = Callback(calls)
        late_ref = weakref.ref(late)
        k.on_cancel(late)
        del late
        gc.collect()
        assert refs[0]() is None and late_ref() is None  # while k is still held
        assert calls == []
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_cancel_callback_that_stops_the_program_is_raised_in_the_task(
    dneio_runner: Harness, stop: type[BaseException]
) -> None:
    """A callback raising KeyboardInterrupt or SystemExit (a second Ctrl-C, a
    sys.exit() in it) cannot be reported away, nor raised in the middle of
    the runner's cancellation: the other callbacks run, and the task raises
    it at its ``await shift`` instead of its cancellation, so nothing is left
    waiting for ever."""

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        calls: list[str] = []
        seen: list[BaseException] = []
        raised = stop("from the callback")

        def stopping() -> None:
            calls.append("stopping")
            raise raised

        async def waiter() -> str:
            try:
                await shift(box.append)
            except stop as exc:
                seen.append(exc)
            return "carried on"

        t = h.spawn(waiter)
        await h.settle()
        k = box[0]
        k.on_cancel(stopping)
        k.on_cancel(lambda: calls.append("second"))
        t.cancel()
        t.cancel()  # (a task group and a timeout, in one pass): still raised
        await h.settle()
        assert calls == ["stopping", "second"]
        assert seen == [raised]
        assert t.done and not t.cancelled and t.result == "carried on"
        assert k.is_cancelled()
        k.send("too late")  # still a no-op
        return "ok"

    assert dneio_runner.run(main) == "ok"


@pytest.mark.dneio_runners("trio", "anyio-trio", "trio-deferred")
def test_trio_timeouts_and_shielded_scopes(dneio_runner: Harness) -> None:
    import trio

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        with trio.move_on_after(0.01) as scope:
            await shift(box.append)
        assert scope.cancelled_caught and box[0].is_cancelled()
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.01):
                await shift(box.append)
        # Parked inside a shielded scope: the outer cancellation does not reach it.
        log = []

        async def shielded() -> None:
            with trio.CancelScope(shield=True):
                log.append(await shift(box.append))
            log.append("after shield")
            await trio.sleep(0)

        t = h.spawn(shielded)
        await h.settle()
        t.cancel()
        await h.settle()
        assert not t.done and not box[-1].is_cancelled()
        box[-1].send("kept")
        await h.settle()
        assert log == ["kept", "after shield"] and t.cancelled
        return "ok"

    assert dneio_runner.run(main) == "ok"


@pytest.mark.dneio_runners("asyncio", "asyncio-pytask", "uvloop", "asyncio-deferred")
def test_asyncio_timeouts(dneio_runner: Harness) -> None:
    import asyncio

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await shift(box.append)
        assert box[-1].is_cancelled()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(shift(box.append), 0.01)
        assert box[-1].is_cancelled()
        # A timeout that does not fire leaves the value alone.
        async with asyncio.timeout(5):
            task = asyncio.current_task()
            assert task is not None

            async def resume_later() -> None:
                box[-1].send("in time")

            await asyncio.sleep(0)
            got = await shift(lambda k: (box.append(k), h.spawn(resume_later)))
            assert asyncio.current_task() is task
        assert got == "in time"
        return "ok"

    assert dneio_runner.run(main) == "ok"


@pytest.mark.dneio_runners("anyio-asyncio", "anyio-trio")
def test_anyio_cancel_scopes(dneio_runner: Harness) -> None:
    import anyio

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        with anyio.move_on_after(0.01) as scope:
            await shift(box.append)
        assert scope.cancelled_caught and box[0].is_cancelled()
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.01):
                await shift(box.append)
        return "ok"

    assert dneio_runner.run(main) == "ok"


@pytest.mark.dneio_runners("asyncio", "asyncio-pytask", "uvloop", "asyncio-deferred")
def test_asyncio_timeout_past_a_shielded_wait(dneio_runner: Harness) -> None:
    """The value arrives, then the timeout fires at the next await, as a TimeoutError."""
    import asyncio

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        got: list[Any] = []

        def park_shielded(k: Any) -> None:
            k.shield()
            box.append(k)

        async def resume_later() -> None:
            await asyncio.sleep(0.05)
            box[0].send("late value")

        h.spawn(resume_later)
        task = asyncio.current_task()
        assert task is not None
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                got.append(await shift(park_shielded))
                await asyncio.sleep(0)
                got.append("not reached")
        assert task.cancelling() == 0
        await asyncio.sleep(0)  # no cancellation left over
        return got

    assert dneio_runner.run(main) == ["late value"]

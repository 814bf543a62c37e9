"""Native coroutines that await host operations are adopted as host tasks (SPEC section 2)."""

from __future__ import annotations

from typing import Any

import pytest

from dneio import reset, shift
from dneio.testing import ALL_RUNNERS, Harness

HOSTS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if n != "native"))


async def _host_sleep(h: Harness, seconds: float) -> None:
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


@HOSTS
def test_native_coroutine_awaiting_host_sleep_is_adopted(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []
        box: list[Any] = []

        async def native() -> str:
            log.append("start")
            await _host_sleep(h, 0.001)
            log.append("slept")
            # Back in dneio operations, now as a host task.
            log.append(await shift(box.append))
            await _host_sleep(h, 0)
            log.append("end")
            return "result"

        assert reset(native()) is None  # suspended in a host operation
        assert log == ["start"]
        # The resuming task's own cancel scopes are intact: it can sleep too.
        await _host_sleep(h, 0.02)
        await h.settle()
        assert log == ["start", "slept"]
        box[0].send("value")
        await _host_sleep(h, 0.001)
        await h.settle()
        return log

    assert dneio_runner.run(main) == ["start", "slept", "value", "end"]


@HOSTS
def test_adopted_coroutine_keeps_cancel_scopes_working(dneio_runner: Harness) -> None:
    """Timeouts opened by the adopted coroutine still apply to it, and only to it."""

    async def main(h: Harness) -> Any:
        log: list[str] = []

        async def native() -> None:
            if h.base == "trio":
                import trio

                with trio.move_on_after(0.01) as scope:
                    await trio.sleep(10)
                log.append(f"moved on: {scope.cancelled_caught}")
            elif h.base == "twisted":
                from twisted.internet import defer, reactor
                from twisted.internet.task import deferLater

                try:
                    nap = deferLater(reactor, 10, lambda: None)  # type: ignore[arg-type]
                    await nap.addTimeout(0.01, reactor)  # type: ignore[arg-type]
                except defer.TimeoutError:
                    log.append("moved on: True")
            else:
                import asyncio

                try:
                    await asyncio.wait_for(asyncio.sleep(10), 0.01)
                except TimeoutError:
                    log.append("moved on: True")

        reset(native())
        for _ in range(200):
            if log:
                break
            await _host_sleep(h, 0.005)
        return log

    assert dneio_runner.run(main) == ["moved on: True"]


@HOSTS
def test_finally_blocks_run_when_adopted_coroutine_fails(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []

        async def native() -> None:
            try:
                await _host_sleep(h, 0)
                raise ZeroDivisionError("inside adopted coroutine")
            finally:
                log.append("finally")

        reset(native())
        await _host_sleep(h, 0.01)
        await h.settle()
        return log

    if dneio_runner.base == "trio":
        # trio never lets an error pass silently: it ends the run.
        import trio

        with pytest.raises((trio.TrioInternalError, BaseExceptionGroup)):
            dneio_runner.run(main)
    elif dneio_runner.base == "twisted":
        # Twisted's own channel for errors nobody receives: its log.
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        try:
            assert dneio_runner.run(main) == ["finally"]
        finally:
            globalLogPublisher.removeObserver(events.append)
        failures = [e for e in events if "log_failure" in e]
        assert failures[0]["log_failure"].check(ZeroDivisionError)
        assert "nobody received" in failures[0]["log_format"]
    else:
        import asyncio

        errors: list[dict[str, Any]] = []

        async def wrapped(h: Harness) -> Any:
            asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
            return await main(h)

        assert dneio_runner.run(wrapped) == ["finally"]
        assert isinstance(errors[0]["exception"], ZeroDivisionError)
        assert "nobody received" in errors[0]["message"]


@pytest.mark.dneio_runners(
    "asyncio",
    "asyncio-pytask",
    "uvloop",
    "anyio-asyncio",
    "asyncio-deferred",
)
def test_resumed_asyncio_task_sees_itself_as_current(dneio_runner: Harness) -> None:
    import asyncio

    async def main(h: Harness) -> Any:
        box: list[Any] = []
        seen: list[Any] = []

        async def waiter() -> None:
            me = asyncio.current_task()
            await shift(box.append)
            seen.append(asyncio.current_task() is me)
            async with asyncio.TaskGroup() as tg:
                child = tg.create_task(asyncio.sleep(0, "child result"))
            seen.append(child.result())
            async with asyncio.timeout(5):
                await shift(box.append)
            seen.append(asyncio.current_task() is me)

        t = h.spawn(waiter)
        await h.settle()
        box.pop().send(None)
        await h.settle()
        box.pop().send(None)
        await h.settle()
        t.get()
        return seen

    assert dneio_runner.run(main) == [True, "child result", True]


@pytest.mark.dneio_runners("trio", "anyio-trio", "trio-deferred")
def test_native_coroutines_may_wait_on_trio_operations_that_register_the_task(
    dneio_runner: Harness,
) -> None:
    """I/O waits and parking lots register the current task: it must be the adopter."""
    import socket

    import trio

    async def main(h: Harness) -> Any:
        a, b = socket.socketpair()
        a.setblocking(False)
        event = trio.Event()
        log: list[Any] = []

        async def reader() -> None:
            await trio.lowlevel.wait_readable(a)
            log.append(a.recv(10))

        async def event_waiter() -> None:
            await event.wait()
            log.append("event")

        async def shifter() -> None:
            log.append(await shift(box.append))
            await trio.sleep(0)
            log.append("after sleep")

        box: list[Any] = []
        reset(reader())
        reset(event_waiter())
        reset(shifter())
        # The resuming task carries on with its own waits, undisturbed.
        await trio.sleep(0.01)
        assert log == []
        b.send(b"data")
        event.set()
        box[0].send("resumed")
        with trio.fail_after(5):
            while len(log) < 4:
                await trio.sleep(0.001)
        a.close()
        b.close()
        return sorted(map(str, log))

    assert dneio_runner.run(main) == sorted(["b'data'", "event", "resumed", "after sleep"])


@pytest.mark.dneio_runners("trio", "anyio-trio", "trio-deferred")
def test_native_code_goes_on_after_a_coroutine_it_started_was_adopted(
    dneio_runner: Harness,
) -> None:
    import trio

    async def main(h: Harness) -> Any:
        log: list[str] = []

        async def inner() -> None:
            # Far later than outer's wake-up, even on a busy machine.
            await trio.sleep(0.3)
            log.append("inner woke")

        async def outer() -> None:
            reset(inner())  # adopted by the native host current right now
            await trio.sleep(0.01)  # must not register that same host
            log.append("outer woke")

        reset(outer())
        with trio.fail_after(5):
            while len(log) < 2:
                await trio.sleep(0.005)
        return log

    assert dneio_runner.run(main) == ["outer woke", "inner woke"]


def test_an_event_loop_started_inside_a_native_coroutine_gets_a_clear_error() -> None:
    import asyncio

    async def in_the_loop() -> Any:
        return await shift(lambda k: k.send(1))

    async def native() -> Any:
        return asyncio.run(in_the_loop())

    with pytest.raises(RuntimeError, match=r"start event loops .* outside native coroutines"):
        reset(native())

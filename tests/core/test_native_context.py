"""Each native coroutine runs in its own ``contextvars`` context (SPEC section 9)."""

from __future__ import annotations

import decimal
import threading
from contextvars import ContextVar
from typing import Any

import pytest

from dneio import Event, RequestQueue, reset, shift
from dneio.testing import ALL_RUNNERS, Harness

HOSTS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if n != "native"))

var: ContextVar[str] = ContextVar("var", default="unset")


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


def test_the_example_from_the_issue() -> None:
    ks: list[Any] = []
    seen: list[tuple[str, str]] = []

    async def worker(name: str) -> None:
        var.set(name)
        await shift(ks.append)
        seen.append((name, var.get()))

    def caller() -> str:
        reset(worker("a"))
        reset(worker("b"))
        return var.get()

    assert threading_run(caller) == "unset"
    for k in ks:
        k.send(None)
    assert seen == [("a", "a"), ("b", "b")]


def threading_run(fn: Any) -> Any:
    """Run ``fn`` in a fresh thread (a fresh context), so tests do not share values."""
    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()))
    t.start()
    t.join()
    return box[0]


def test_each_coroutine_sees_its_own_values_whoever_resumes_it(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        var.set("caller")
        seen: list[tuple[str, str]] = []
        ks: dict[str, Any] = {}

        async def worker(name: str) -> None:
            assert var.get() == "caller"  # a copy of the context reset() was called in
            var.set(name)
            for _ in range(3):
                await shift(lambda k: ks.__setitem__(name, k))
                seen.append((name, var.get()))
                var.set(name + "+")
                var.set(name)

        async def resumer(name: str, target: str) -> None:
            var.set(name)
            await shift(lambda k: ks.__setitem__(name, k))
            ks.pop(target).send(None)
            # The resumed coroutine's values stayed with it.
            seen.append((name, var.get()))

        reset(worker("a"))
        reset(worker("b"))
        assert var.get() == "caller"
        # Resumed by the task itself, by another native coroutine, and by a
        # spawned task, each with values of its own.
        ks.pop("a").send(None)
        assert var.get() == "caller"
        reset(resumer("r", "b"))
        ks.pop("r").send(None)
        assert var.get() == "caller"

        async def task() -> None:
            var.set("task")
            ks.pop("a").send(None)
            ks.pop("b").send(None)
            seen.append(("task", var.get()))

        h.spawn(task)
        await h.settle()
        assert var.get() == "caller"
        return seen

    assert dneio_runner.run(main) == [
        ("a", "a"),
        ("b", "b"),
        ("r", "r"),
        ("a", "a"),
        ("b", "b"),
        ("task", "task"),
    ]


def test_coroutines_started_inside_others_inherit_and_keep_their_values(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> Any:
        seen: list[tuple[str, str]] = []
        ks: list[Any] = []

        async def child() -> None:
            seen.append(("child starts with", var.get()))
            var.set("child")
            await shift(ks.append)
            seen.append(("child", var.get()))

        async def parent() -> None:
            var.set("parent")
            reset(child())
            seen.append(("parent after reset", var.get()))
            var.set("parent, later")
            await shift(ks.append)
            seen.append(("parent", var.get()))

        var.set("task")
        reset(parent())
        child_k, parent_k = ks
        parent_k.send(None)
        child_k.send(None)
        seen.append(("task", var.get()))
        return seen

    assert dneio_runner.run(main) == [
        ("child starts with", "parent"),
        ("parent after reset", "parent"),
        ("parent", "parent, later"),
        ("child", "child"),
        ("task", "task"),
    ]


@HOSTS
def test_host_tasks_keep_their_context_when_native_code_resumes_them(dneio_runner: Harness) -> None:
    """A task resumed synchronously by a native coroutine runs in its own context;
    the native coroutine's comes back afterwards."""

    async def main(h: Harness) -> Any:
        seen: list[tuple[str, str]] = []
        box: list[Any] = []
        queue: RequestQueue[str, str] = RequestQueue()

        async def task() -> None:
            var.set("task")
            for _ in range(3):
                reply = await queue.request("hello")
                seen.append((reply, var.get()))

        async def server() -> None:
            var.set("server")
            while True:
                _req, k = await queue.get_one()
                k.send("reply")  # runs the task on this stack (synchronous modes)
                seen.append(("server", var.get()))
                await shift(box.append)

        reset(server())
        h.spawn(task)
        await h.settle()
        for _ in range(2):
            box.pop().send(None)
            await h.settle()
        return seen

    # The order of the two differs between runs and modes; the values never do.
    assert sorted(dneio_runner.run(main)) == [("reply", "task")] * 3 + [("server", "server")] * 3


@HOSTS
def test_coroutine_started_in_a_task_inherits_its_values_and_leaves_them_alone(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> Any:
        seen: list[str] = []
        event = Event()

        async def native() -> None:
            seen.append(var.get())
            var.set("native")
            await event.wait()
            seen.append(var.get())

        var.set("task")
        reset(native())
        seen.append(var.get())
        event.set()
        seen.append(var.get())
        return seen

    assert dneio_runner.run(main) == ["task", "task", "native", "task"]


@HOSTS
def test_adopted_coroutine_keeps_running_in_its_own_context(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        seen: list[tuple[str, str]] = []
        box: list[Any] = []

        async def native() -> None:
            var.set("native")
            await _host_sleep(h, 0)  # adopted: a host task from here on
            seen.append(("after host sleep", var.get()))
            await shift(box.append)
            seen.append(("after shift", var.get()))
            await _host_sleep(h, 0)
            seen.append(("end", var.get()))

        var.set("task")
        reset(native())
        assert var.get() == "task"
        await _host_sleep(h, 0.01)
        await h.settle()
        box.pop().send(None)
        assert var.get() == "task"
        await _host_sleep(h, 0.01)
        await h.settle()
        return seen

    assert dneio_runner.run(main) == [
        ("after host sleep", "native"),
        ("after shift", "native"),
        ("end", "native"),
    ]


def test_func_runs_in_the_context_of_whoever_started_or_resumed_the_coroutine(
    dneio_runner: Harness,
) -> None:
    """The body of shift runs outside the coroutine, at its delimiter: natively the
    caller of reset() or the resumer, in a host task the task itself."""

    async def main(h: Harness) -> Any:
        seen: list[str] = []
        ks: list[Any] = []

        def func(k: Any) -> None:
            seen.append(var.get())
            ks.append(k)

        async def native() -> None:
            var.set("native")
            await shift(func)
            await shift(func)

        var.set("starter")
        reset(native())

        async def resumer() -> None:
            var.set("resumer")
            ks.pop().send(None)

        reset(resumer())

        async def in_task() -> None:
            var.set("in task")
            await shift(func)

        h.spawn(in_task)
        await h.settle()
        ks.pop().send(None)
        await h.settle()
        return seen

    # Natively a spawned "task" is one more native coroutine: its func runs
    # in the context of whoever started it.
    last = "starter" if dneio_runner.name == "native" else "in task"
    assert dneio_runner.run(main) == ["starter", "resumer", last]


def test_decimal_local_context_stays_with_its_coroutine() -> None:
    ks: list[Any] = []
    results: list[decimal.Decimal] = []

    async def divide(precision: int) -> None:
        with decimal.localcontext() as ctx:
            ctx.prec = precision
            await shift(ks.append)
            results.append(decimal.Decimal(1) / decimal.Decimal(7))

    def run() -> None:
        reset(divide(3))
        reset(divide(6))
        assert decimal.getcontext().prec == 28
        ks[1].send(None)
        ks[0].send(None)

    threading_run(run)
    assert [str(r) for r in results] == ["0.142857", "0.143"]


def test_native_coroutine_resumed_from_another_thread_sees_its_values() -> None:
    ks: list[Any] = []
    seen: list[str] = []

    async def worker() -> None:
        var.set("worker")
        await shift(ks.append)
        seen.append(var.get())
        var.set("worker again")
        await shift(ks.append)
        seen.append(var.get())

    def start() -> None:
        var.set("starter")
        reset(worker())

    threading_run(start)

    def resume() -> str:
        var.set("other thread")
        ks.pop().send(None)
        return var.get()

    assert threading_run(resume) == "other thread"
    assert threading_run(resume) == "other thread"
    assert seen == ["worker", "worker again"]


def test_queued_and_trampolined_resumptions_run_in_the_coroutines_context() -> None:
    """Deep chains are trampolined: the queued steps still enter each coroutine's context."""
    n = 500
    seen: list[bool] = []
    ks: list[Any] = []

    async def link(i: int) -> None:
        var.set(f"link {i}")
        await shift(ks.append)
        seen.append(var.get() == f"link {i}")
        if i + 1 < n:
            ks[i + 1].send(None)

    def run() -> None:
        for i in range(n):
            reset(link(i))
        var.set("driver")
        ks[0].send(None)
        assert var.get() == "driver"

    threading_run(run)
    assert seen == [True] * n


def test_adopted_without_trio_internals_keeps_its_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the native host (trio's internals failed their check), an adopted
    coroutine becomes a system task of its own: in its own context too."""
    pytest.importorskip("trio")
    import trio
    import trio.testing

    from dneio._core._registry import get_runner

    runner = get_runner("trio")
    monkeypatch.setattr(runner, "internals_ok", False)
    monkeypatch.setattr(runner, "synchronous", False)

    async def main() -> list[str]:
        seen: list[str] = []
        var.set("task")

        async def native() -> None:
            var.set("native")
            await trio.lowlevel.checkpoint()  # adopted: a trio system task from here
            seen.append(var.get())

        reset(native())
        assert var.get() == "task"
        await trio.testing.wait_all_tasks_blocked()
        seen.append(var.get())
        return seen

    assert trio.run(main) == ["native", "task"]

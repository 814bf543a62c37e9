"""The Twisted host: coroutines run by Deferred.fromCoroutine (SPEC sections 2-4, 9).

The behaviour suite runs on Twisted through the harness (runners ``twisted``
and ``twisted-asyncio``); this file checks what is Twisted's own: telling
its coroutines from asyncio's on the asyncio reactor, Deferred cancellation,
Deferred adoption, coroutines with no reactor, the guard around the private
internals and the public-API fallback, and a real program under ``react``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

pytest.importorskip("twisted")

from twisted.internet import defer

from dneio import RequestQueue, current_runner, reset, shift
from dneio._core._registry import get_runner
from dneio._hosts._twisted import _internals as internals
from dneio._hosts._twisted._runner import RUNNER, TwistedRunner
from dneio.io import host
from dneio.testing import Harness, fresh_reactor

BOTH = pytest.mark.dneio_runners("twisted", "twisted-asyncio")


@pytest.fixture(params=["internals", "fallback"])
def mode(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the checked internals, and again on the public-API fallback."""
    if request.param == "fallback":
        monkeypatch.setattr(RUNNER, "internals_ok", False)
    return str(request.param)


def _reactor() -> Any:
    return sys.modules["twisted.internet.reactor"]


async def _turn() -> None:
    """Let the reactor go round once."""
    from twisted.internet.task import deferLater

    await deferLater(_reactor(), 0, lambda: None)


# -- the guard ---------------------------------------------------------------------------
def test_installed_twisted_passes_the_guard() -> None:
    assert internals.check(), internals.problem
    assert RUNNER.internals_ok and RUNNER.problem == ""
    assert get_runner("twisted") is RUNNER
    assert RUNNER.mode() == "synchronous"
    RUNNER.set_mode("synchronous")
    with pytest.raises(RuntimeError, match="no deferred mode"):
        RUNNER.set_mode("deferred")
    with pytest.raises(ValueError, match="synchronous' or 'deferred"):
        RUNNER.set_mode("fast")


def test_guard_notices_a_missing_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_STEP", None)
    runner = TwistedRunner()
    assert not runner.internals_ok
    assert "_inlineCallbacks" in runner.problem
    assert runner.mode() == "synchronous"  # resumption never needed the internals


def test_guard_notices_a_driver_it_does_not_recognise(monkeypatch: pytest.MonkeyPatch) -> None:
    # Twisted stepping coroutines from some other function than the known ones.
    monkeypatch.setattr(internals, "_STEP", internals.check.__code__)
    monkeypatch.setattr(internals, "_THROW", TwistedRunner.shift.__code__)
    assert not internals.check()
    assert "does not recognise" in internals.problem


def test_guard_notices_a_missing_cancellation_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "_HANDLE_CANCEL", None)
    assert not internals.check()
    assert "_handleCancelInlineCallbacks" in internals.problem
    monkeypatch.setattr(internals, "_HANDLE_CANCEL", internals.check.__code__)
    assert not internals.check()


def test_guard_notices_a_lost_cancellation_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "cancelling_status", lambda: None)
    assert not internals.check()
    assert "cancellation record" in internals.problem


# -- basics on both reactors, with the internals and on the fallback ------------------------
@BOTH
def test_shift_order_threads_and_cancellation(dneio_runner: Harness, mode: str) -> None:
    async def main(h: Harness) -> Any:
        assert current_runner() == "twisted"
        ks: list[Any] = []
        log: list[Any] = []

        async def waiter(i: int) -> None:
            log.append((i, await shift(ks.append)))
            log.append((i, "next"))
            log.append((i, await shift(ks.append)))

        tasks = [h.spawn(waiter, i) for i in range(20)]
        assert len(ks) == 20
        first = ks[:20]
        for i in reversed(range(20)):
            first[i].send(i)
            # Synchronous: it ran to its next shift before send returned.
            assert log[-2:] == [(i, i), (i, "next")]
        # From another thread: hops to the reactor, in order (they parked 19 first).
        second = ks[20:]
        assert len(second) == 20
        del log[:]
        t = threading.Thread(target=lambda: [k.send(None) for k in second])
        t.start()
        t.join()
        while not all(x.done for x in tasks):
            await _turn()
        assert log == [(i, None) for i in reversed(range(20))]
        # Cancellation through the coroutine's Deferred.
        cancelled: list[str] = []

        async def victim() -> None:
            await shift(lambda k: (ks.append(k), k.on_cancel(lambda: cancelled.append("cb"))))

        v = h.spawn(victim)
        v.cancel()
        assert cancelled == ["cb"] and v.cancelled
        assert isinstance(v.exception, defer.CancelledError)
        assert ks[-1].is_cancelled()
        ks[-1].send("ignored")  # no resurrection
        return "ok"

    assert dneio_runner.run(main) == "ok"


@BOTH
def test_shield_holds_off_deferred_cancel(dneio_runner: Harness, mode: str) -> None:
    """Deferred.cancel() waits for a shielded wait's value; with the internals it is then
    repeated at the coroutine's next wait (a plain Deferred here), on the fallback absorbed."""

    async def main(h: Harness) -> Any:
        ks: list[Any] = []
        log: list[Any] = []
        next_wait_cancelled: list[bool] = []

        async def waiter() -> None:
            def func(k: Any) -> None:
                k.shield()
                ks.append(k)

            log.append(await shift(func))
            plain: defer.Deferred[str] = defer.Deferred(
                lambda d: next_wait_cancelled.append(True)
            )
            ks.append(plain)
            log.append(await plain)

        t = h.spawn(waiter)
        t.cancel()
        t.cancel()  # twice: still held off
        assert not t.done and log == []
        ks[0].send("the value")
        assert log == ["the value"]
        if mode == "internals":
            assert next_wait_cancelled == [True] and t.cancelled
        else:
            assert next_wait_cancelled == [] and not t.done
            ks[1].callback("then this")
            assert t.done and log == ["the value", "then this"]
        return "ok"

    assert dneio_runner.run(main) == "ok"


# -- the two hosts on one thread: the asyncio reactor -------------------------------------
@pytest.mark.dneio_runners("twisted-asyncio")
def test_asyncio_tasks_and_twisted_coroutines_do_not_confuse_each_other(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> Any:
        log: list[Any] = []
        ks: list[Any] = []

        async def twisted_side(tag: str) -> None:
            log.append((tag, current_runner(), type(host()).__name__))
            log.append((tag, await shift(ks.append)))
            log.append((tag, current_runner()))

        async def asyncio_side() -> None:
            log.append(("asyncio", current_runner(), type(host()).__name__))
            # A Twisted coroutine started inside this asyncio task's step is Twisted's.
            defer.Deferred.fromCoroutine(twisted_side("started by asyncio"))
            log.append(("asyncio", await shift(ks.append)))
            # And one stepped by a Deferred this task fires.
            ready.callback(None)
            log.append(("asyncio", current_runner()))

        ready: defer.Deferred[None] = defer.Deferred()

        async def twisted_waits_then_shifts() -> None:
            await ready
            await twisted_side("woken by asyncio")

        defer.Deferred.fromCoroutine(twisted_waits_then_shifts())
        # An asyncio task started from this Twisted coroutine is asyncio's.
        task = defer.Deferred.fromFuture(asyncio.get_running_loop().create_task(asyncio_side()))
        while len(ks) < 2:
            await _turn()
        # Resume the Twisted coroutine from here, then the asyncio task: the
        # asyncio task fires `ready` during its synchronous step.
        ks[0].send("to twisted")
        ks[1].send("to asyncio")
        ks[2].send("to the second twisted")
        await task
        return log

    log = dneio_runner.run(main)
    assert log == [
        ("asyncio", "asyncio", "AsyncioIO"),
        ("started by asyncio", "twisted", "TwistedIO"),
        ("started by asyncio", "to twisted"),
        ("started by asyncio", "twisted"),
        ("asyncio", "to asyncio"),
        ("woken by asyncio", "twisted", "TwistedIO"),
        ("asyncio", "asyncio"),
        ("woken by asyncio", "to the second twisted"),
        ("woken by asyncio", "twisted"),
    ]


@pytest.mark.dneio_runners("twisted-asyncio")
def test_on_the_fallback_a_twisted_coroutine_inside_an_asyncio_task_is_refused(
    dneio_runner: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the internals dneio cannot tell them apart: it says so, and loses nothing."""
    monkeypatch.setattr(RUNNER, "internals_ok", False)

    async def main(h: Harness) -> Any:
        dropped: list[str] = []
        outcome: list[Any] = []

        kept: list[Any] = []

        async def twisted_side() -> None:
            def func(k: Any) -> None:
                kept.append(k)
                k.on_cancel(lambda: dropped.append("on_cancel"))

            await shift(func)

        async def asyncio_side() -> None:
            d = defer.Deferred.fromCoroutine(twisted_side())
            d.addErrback(lambda f: outcome.append(f.value))

        await defer.Deferred.fromFuture(asyncio.get_running_loop().create_task(asyncio_side()))
        return dropped, outcome

    dropped, outcome = dneio_runner.run(main)
    assert dropped == ["on_cancel"]
    assert isinstance(outcome[0], RuntimeError)
    assert "Twisted coroutine" in str(outcome[0])


# -- adoption of Deferreds ------------------------------------------------------------------
@BOTH
def test_native_coroutine_awaiting_a_deferred_is_adopted_by_twisted(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[Any] = []
        d: defer.Deferred[str] = defer.Deferred()

        async def native() -> str:
            log.append(current_runner())
            log.append(await d)
            log.append(current_runner())
            log.append(await shift(ks.append))
            return "done"

        ks: list[Any] = []
        assert reset(native()) is None  # suspended in a Deferred
        d.callback("fired")
        assert log == ["native", "fired", "twisted"]
        ks[0].send("shifted")
        assert log[-1] == "shifted"
        return "ok"

    assert dneio_runner.run(main) == "ok"


@pytest.mark.dneio_runners("twisted-asyncio")
def test_each_host_adopts_its_own_awaitables(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[Any] = []
        d: defer.Deferred[str] = defer.Deferred()

        async def native() -> None:
            log.append(await d)
            log.append(current_runner())

        async def native_asyncio() -> None:
            await asyncio.sleep(0)
            log.append(current_runner())

        reset(native())
        reset(native_asyncio())
        d.callback("fired")
        while len(log) < 3:
            await _turn()
        return sorted(log)

    assert dneio_runner.run(main) == ["asyncio", "fired", "twisted"]


# -- no reactor at all: Deferreds alone drive the coroutines --------------------------------
def test_coroutines_driven_by_deferreds_alone() -> None:
    assert "twisted.internet.reactor" not in sys.modules
    log: list[Any] = []
    ks: list[Any] = []
    queue: RequestQueue[int, int] = RequestQueue()

    async def server() -> None:
        while True:
            n, k = await queue.get_one()
            k.send(n * 2)

    async def client(i: int) -> None:
        assert current_runner() == "twisted"
        log.append(await queue.request(i))
        log.append(await shift(ks.append))

    reset(server())
    outcome: list[Any] = []
    for i in range(3):
        defer.ensureDeferred(client(i)).addBoth(outcome.append)
    assert log == [0, 2, 4]
    ks[1].send("b")
    assert log[-1] == "b" and outcome == [None]
    # Another thread cannot hop to a reactor that does not exist: refused before the claim.
    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            ks[0].send("a")
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=from_thread)
    t.start()
    t.join()
    assert "no Twisted reactor" in str(errors[0])
    ks[0].send("a")  # still resumable from here
    assert outcome == [None, None]
    ks[2].throw(KeyError("c"))
    assert outcome[2].check(KeyError)


def test_inline_callbacks_generators_can_yield_dneio_operations() -> None:
    ks: list[Any] = []

    async def wait() -> Any:
        return await shift(ks.append)

    @defer.inlineCallbacks
    def old_style() -> Any:
        value = yield defer.ensureDeferred(wait())
        return value * 2

    d = old_style()
    assert not d.called
    ks[0].send(21)
    got: list[Any] = []
    d.addCallback(got.append)
    assert got == [42]


def test_inline_callbacks_generators_can_yield_shift_itself() -> None:
    """Newer Twisted steps a coroutine an inlineCallbacks generator yields (the compiled
    shift is driven straight from Twisted's driver then, with no coroutine frame between)."""

    async def one() -> int:
        return 1

    made: list[Any] = []

    @defer.inlineCallbacks
    def probe() -> Any:
        made.append(one())
        return (yield made[-1])

    got: list[Any] = []
    probe().addCallback(got.append)
    if got != [1]:
        made[-1].close()  # handed back as a value, never run: no "never awaited" warning
        pytest.skip("this Twisted release does not run coroutines yielded by inlineCallbacks")
    ks: list[Any] = []

    @defer.inlineCallbacks
    def old_style() -> Any:
        value = yield shift(ks.append)
        return value * 2

    d = old_style()
    assert not d.called
    ks[0].send(21)
    d.addCallback(got.append)
    assert got == [1, 42]


def test_shift_driven_by_something_else_is_not_taken_for_twisted() -> None:
    async def probe() -> None:
        await shift(lambda k: None)

    coro = probe()
    with pytest.raises(RuntimeError, match="nothing to suspend"):
        coro.send(None)


@BOTH
def test_in_the_reactor_a_coroutine_stepped_by_hand_is_refused(dneio_runner: Harness) -> None:
    """Taken for Twisted's (the cheap answer), it gets an error that says why; k is dropped."""

    async def main(h: Harness) -> Any:
        kept: list[Any] = []
        cancelled: list[bool] = []

        async def probe() -> None:
            await shift(lambda k: (kept.append(k), k.on_cancel(lambda: cancelled.append(True))))

        coro = probe()
        yielded = coro.send(None)
        assert isinstance(yielded, defer.Deferred)
        with pytest.raises(RuntimeError, match="only Twisted"):
            coro.send("something else")
        assert cancelled == [True] and kept[0].is_cancelled()
        return "ok"

    assert dneio_runner.run(main) == "ok"


# -- the harness's reactors ---------------------------------------------------------------------
@pytest.mark.parametrize("on_asyncio", [False, True])
def test_fresh_reactor_leaves_nothing_behind(on_asyncio: bool) -> None:
    import os

    before = set(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with fresh_reactor(on_asyncio) as reactor:
            assert sys.modules["twisted.internet.reactor"] is reactor
            reactor.callWhenRunning(reactor.stop)
            reactor.run(installSignalHandlers=False)
    assert "twisted.internet.reactor" not in sys.modules
    assert set(os.listdir("/proc/self/fd")) == before


# -- a real program -----------------------------------------------------------------------------
PROGRAM = """
import sys, threading
from twisted.internet import defer, task
import dneio, dneio.io
from dneio import shift, reset, current_runner

async def main(reactor):
    assert current_runner() == "twisted", current_runner()
    ks, log = [], []

    async def waiter(i):
        log.append(await shift(ks.append))

    for i in range(3):
        defer.ensureDeferred(waiter(i))
    ks[2].send("c"); ks[0].send("a"); ks[1].send("b")
    assert log == ["c", "a", "b"]
    # cancellation
    hit = []
    async def victim():
        await shift(lambda k: k.on_cancel(lambda: hit.append(1)) or ks.append(k))
    d = defer.ensureDeferred(victim())
    d.cancel()
    assert hit == [1]
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    # a thread resumes
    v = await shift(lambda k: threading.Thread(target=k.send, args=("threaded",)).start())
    assert v == "threaded" and threading.current_thread() is threading.main_thread()
    # a native coroutine adopts a Deferred
    async def native():
        return await task.deferLater(reactor, 0.01, lambda: "later")
    fut = dneio.Future.start(native())
    assert await fut.get() == "later"
    io = dneio.io.host()
    await io.sleep(0.01)
    print("ok", type(io).__name__)

task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
"""


@pytest.mark.parametrize("reactor", ["default", "asyncio"])
def test_a_program_under_react(reactor: str) -> None:
    program = PROGRAM
    if reactor == "asyncio":
        install = "from twisted.internet import asyncioreactor; asyncioreactor.install()\n"
        program = install + program
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok TwistedIO"


def test_twisted_is_loaded_only_by_programs_that_use_it() -> None:
    code = (
        "import asyncio, sys, dneio\n"
        "async def main():\n"
        "    return await dneio.shift(lambda k: k.send(dneio.current_runner()))\n"
        "assert asyncio.run(main()) == 'asyncio'\n"
        "print(sorted(m for m in sys.modules if 'twisted' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


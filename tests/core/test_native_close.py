"""Closing a native coroutine parked in shift cancels its wait (SPEC section 9)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from functools import partial
from typing import Any

import pytest

from dneio import (
    Channel,
    ContinuationSpentError,
    CoroutineClosedError,
    Event,
    Future,
    Lock,
    RequestQueue,
    first_of,
    reset,
    run_all,
    shift,
)
from dneio._core._impl import current_state
from dneio.io import Selector
from dneio.testing import Harness


def _parked(log: list[str] | None = None) -> tuple[Any, Any]:
    """A native coroutine parked in shift, and its continuation."""
    ks: list[Any] = []

    async def waiter() -> None:
        try:
            await shift(ks.append)
            if log is not None:
                log.append("resumed")
        finally:
            if log is not None:
                log.append("finally")

    coro = waiter()
    reset(coro)
    return coro, ks[0]


def _assert_clean_state() -> None:
    st = current_state()
    assert (st.depth, st.hold, st.driving, len(st.queue)) == (0, 0, None, 0)


def test_closing_runs_the_callbacks_and_spends_the_continuation() -> None:
    log: list[str] = []
    coro, k = _parked(log)
    k.on_cancel(lambda: log.append("first callback"))
    k.on_cancel(lambda: log.append("second callback"))
    assert not k.is_cancelled()
    coro.close()
    assert log == ["first callback", "second callback", "finally"]
    assert k.is_cancelled()
    k.on_cancel(lambda: log.append("late callback, called at once"))
    assert log[-1] == "late callback, called at once"
    for resume in (k.send, k, lambda v: k.throw(ValueError(v))):
        with pytest.raises(CoroutineClosedError, match="closed") as info:
            resume(1)
        assert "cannot reuse" not in str(info.value)
        assert "waiter" in str(info.value)  # it names the coroutine
        assert isinstance(info.value, ContinuationSpentError)
    _assert_clean_state()


def test_garbage_collecting_a_cycle_cancels_the_wait() -> None:
    log: list[str] = []

    class Holder:
        k: Any = None

    async def waiter(holder: Holder) -> None:
        try:
            await shift(lambda k: setattr(holder, "k", k))
        finally:
            log.append("finally")

    holder = Holder()
    reset(waiter(holder))
    # holder -> k -> coroutine -> frame -> holder: garbage once dropped.
    holder.k.on_cancel(lambda: log.append("callback"))
    del holder
    gc.collect()
    assert log == ["callback", "finally"]
    _assert_clean_state()


def test_throwing_generator_exit_is_a_resumption_not_a_cancellation() -> None:
    log: list[str] = []
    _coro, k = _parked(log)
    k.on_cancel(lambda: log.append("callback"))
    with pytest.raises(GeneratorExit):
        k.throw(GeneratorExit())
    assert log == ["finally"]
    assert not k.is_cancelled()
    with pytest.raises(ContinuationSpentError, match="already resumed"):
        k.send(None)


def test_failing_callback_is_reported_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reported.append(args.exc_value))
    log: list[str] = []
    coro, k = _parked(log)
    k.on_cancel(lambda: 1 / 0)
    k.on_cancel(lambda: log.append("second callback"))
    coro.close()
    assert log == ["second callback", "finally"]
    assert [type(e) for e in reported] == [ZeroDivisionError]


def test_a_continuation_resumed_before_closing_is_not_cancelled() -> None:
    log: list[str] = []
    _coro, k = _parked(log)
    k.on_cancel(lambda: log.append("callback"))
    k.send(None)
    assert log == ["resumed", "finally"]
    assert not k.is_cancelled()


# -- primitives drop the dead waiter --------------------------------------------------


def test_request_queue_skips_a_closed_server_and_waits_for_the_next() -> None:
    queue: RequestQueue[int, int] = RequestQueue()
    served: list[tuple[str, int]] = []

    async def server(name: str) -> None:
        while True:
            val, k = await queue.get_one()
            served.append((name, val))
            k.send(val * 10)

    first = server("first")
    reset(first)
    replies: list[int] = []

    async def requester(val: int) -> None:
        replies.append(await queue.request(val))

    reset(requester(1))
    first.close()
    reset(requester(2))  # no live server: it waits, instead of failing
    assert replies == [10]
    reset(server("second"))
    assert replies == [10, 20]
    assert served == [("first", 1), ("second", 2)]


def test_request_queue_skips_a_closed_requester() -> None:
    queue: RequestQueue[str, str] = RequestQueue()
    replies: list[str] = []

    async def requester(val: str) -> None:
        replies.append(await queue.request(val))

    dead = requester("dead")
    reset(dead)
    reset(requester("alive"))
    dead.close()
    taken: list[str] = []

    async def server() -> None:
        while True:
            val, k = await queue.get_one()
            taken.append(val)
            k.send(val.upper())

    reset(server())
    assert taken == ["alive"] and replies == ["ALIVE"]
    assert "1 pending" not in repr(queue)


def test_get_many_does_not_return_empty_for_a_closed_requester() -> None:
    queue: RequestQueue[str, str] = RequestQueue()
    got: list[Any] = []

    async def requester(val: str) -> None:
        await queue.request(val)

    dead = requester("dead")
    reset(dead)
    dead.close()

    async def server() -> None:
        got.append([val for val, _ in await queue.get_many()])

    reset(server())
    assert got == []  # it waits for a live request
    reset(requester("alive"))
    assert got == [["alive"]]


def test_replying_to_a_closed_requester_is_a_clear_error() -> None:
    queue: RequestQueue[str, str] = RequestQueue()
    got: list[Any] = []

    async def requester() -> None:
        await queue.request("x")

    async def server() -> None:
        got.append(await queue.get_one())

    reset(server())
    coro = requester()
    reset(coro)
    _val, k = got[0]
    coro.close()
    assert k.is_cancelled()
    with pytest.raises(CoroutineClosedError, match="closed"):
        k.send("reply")


def test_event_future_lock_and_channel_skip_closed_waiters() -> None:
    log: list[str] = []
    event = Event()
    future: Future[str] = Future()
    lock = Lock()
    receiving: Channel[str] = Channel(0)
    sending: Channel[str] = Channel(0)
    assert lock.try_acquire()

    async def waiter(name: str, op: Any) -> None:
        log.append(f"{name} got {await op()!r}")

    coros = {}
    for name, op in [
        ("event", event.wait),
        ("future", future.get),
        ("lock", lock.acquire),
        ("receiver", receiving.receive),
        ("sender", partial(sending.send, "from a closed sender")),
    ]:
        for who in ("dead", "live"):
            coros[who, name] = waiter(f"{who} {name}", op)
            reset(coros[who, name])
    for (who, _), coro in coros.items():
        if who == "dead":
            coro.close()
    event.set()
    future.set("value")
    lock.release()
    assert lock.locked()  # handed to the live waiter, not the closed one
    assert receiving.try_send("item")  # taken by the live receiver

    async def receive() -> None:
        log.append(f"received {await sending.receive()!r}")

    reset(receive())
    assert sorted(log) == sorted(
        [
            "live event got None",
            "live future got 'value'",
            "live lock got None",
            "live receiver got 'item'",
            "live sender got None",
            "received 'from a closed sender'",
        ]
    )


def test_closing_a_coroutine_waiting_in_first_of_withdraws_every_branch() -> None:
    channel: Channel[str] = Channel(0)
    event = Event()

    async def racer() -> Any:
        return await first_of(channel.receive_cb, event.wait_cb)

    coro = racer()
    reset(coro)
    coro.close()
    assert not channel.try_send("nobody takes this")
    event.set()


def test_closing_a_coroutine_waiting_in_run_all_leaves_the_children_running() -> None:
    """The awaitables go on; the last one to end finds the caller gone: no
    error about the closed caller, and a failure among them still surfaces."""
    for fail in (False, True):
        ks: list[Any] = []

        async def child(i: int) -> int:
            await shift(ks.append)
            if fail and i == 1:
                raise ValueError("child 1 failed")
            return i

        async def caller() -> Any:
            return await run_all(child(0), child(1))

        coro = caller()
        reset(coro)
        coro.close()
        ks[0].send(None)
        if fail:
            with pytest.raises(ValueError, match="child 1 failed"):
                ks[1].send(None)
        else:
            ks[1].send(None)
        _assert_clean_state()


def test_closing_a_coroutine_waiting_on_a_selector_unregisters_it() -> None:
    selector = Selector()
    r, w = os.pipe()
    try:

        async def sleeper() -> None:
            await selector.sleep(1000)

        async def reader() -> None:
            await selector.wait_readable(r)

        coros = [sleeper(), reader()]
        for coro in coros:
            reset(coro)
        assert selector.waiting() == 2
        for coro in coros:
            coro.close()
        assert selector.waiting() == 0
        assert selector.run(0) is True  # nothing left waiting
    finally:
        os.close(r)
        os.close(w)
        selector.close()


def test_closed_native_waiters_do_not_pile_up_in_a_line() -> None:
    event = Event()
    live = []

    async def waiter() -> None:
        await event.wait()

    for i in range(5000):
        coro = waiter()
        reset(coro)
        if i % 10:
            coro.close()
        else:
            live.append(coro)
    assert len(event._waiters._line) <= 4 * len(live) + 32
    assert len(event._waiters) == len(live)
    event.set()


def test_a_request_from_any_runner_waits_for_the_next_server(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        queue: RequestQueue[int, int] = RequestQueue()

        async def server(name: str) -> None:
            while True:
                val, k = await queue.get_one()
                k.send(val + (100 if name == "second" else 0))

        first = server("first")
        reset(first)
        t = h.spawn(queue.request, 1)
        await h.settle()
        assert t.get() == 1
        first.close()
        t = h.spawn(queue.request, 2)
        await h.settle()
        assert not t.done
        reset(server("second"))
        await h.settle()
        return t.get()

    assert dneio_runner.run(main) == 102


# -- finalizers during a collection ---------------------------------------------------

_RSYSCALL_PATTERN = r"""
import gc, random, sys
from dneio import RequestQueue, reset
from dneio._core._impl import current_state

errors = []
sys.unraisablehook = lambda args: errors.append(repr(args.exc_value))
random.seed(int(sys.argv[1]))
closed_fds = []

class Connection:
    "Requests served by a native coroutine that refers back to the connection."

    def __init__(self):
        self.queue = RequestQueue()
        self.resources = []
        reset(self._serve())

    async def _serve(self):
        while True:
            (op, fd), k = await self.queue.get_one()
            closed_fds.append(fd)
            k.send(None)

class Resource:
    "An fd whose __del__ asks the connection to close it."

    def __init__(self, conn, fd):
        self.conn = conn
        self.fd = fd
        conn.resources.append(self)

    def __del__(self):
        reset(self._close())

    async def _close(self):
        await self.conn.queue.request(("close", self.fd))

for i in range(int(sys.argv[2])):
    # Both in one garbage cycle, made in a random order (the collector
    # finalizes them in an order of its own).
    if random.random() < 0.5:
        conn = Connection()
        Resource(conn, i)
    else:
        conn = object.__new__(Connection)
        conn.queue = RequestQueue()
        conn.resources = []
        Resource(conn, i)
        reset(conn._serve())
    if random.random() < 0.3:
        reset(conn._serve())  # a second server
    del conn
    gc.collect()
    st = current_state()
    assert (st.depth, st.hold, st.driving, len(st.queue)) == (0, 0, None, 0), st

print("errors", errors)
print("served", len(closed_fds) > 0)
"""


@pytest.mark.parametrize("pure", ["", "1"], ids=["default core", "pure Python"])
def test_a_finalizer_requesting_on_a_connection_collected_with_it(pure: str) -> None:
    """rsyscall: a connection served by a native coroutine, an object whose
    ``__del__`` requests on it, both in one garbage cycle, collected many times;
    in a plain Python process, where nothing replaces the default hooks."""
    env = dict(os.environ, DNEIO_PURE_PYTHON=pure)
    out = subprocess.run(
        [sys.executable, "-c", _RSYSCALL_PATTERN, "7", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert out.stdout.split("\n")[:2] == ["errors []", "served True"]


def test_the_rsyscall_pattern_in_process() -> None:
    errors: list[BaseException] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda args: errors.append(args.exc_value)
    try:
        namespace: dict[str, Any] = {"__name__": "rsyscall_pattern"}
        program = _RSYSCALL_PATTERN.replace("sys.unraisablehook = ", "_ = ")
        argv = sys.argv
        sys.argv = ["x", "3", "100"]
        try:
            exec(compile(program, "<rsyscall pattern>", "exec"), namespace)
        finally:
            sys.argv = argv
    finally:
        sys.unraisablehook = hook
    assert errors == []
    _assert_clean_state()


def test_finalizers_that_start_and_resume_coroutines_in_the_middle_of_a_step() -> None:
    """A collection can run finalizers at any point of a step: inside the
    coroutine, or inside func, between the coroutine's yield and its resumption."""
    log: list[str] = []
    parked: list[Any] = []

    async def short(i: int) -> None:
        log.append(f"short {i} starts")
        if i % 2:
            await shift(lambda k: k.send(None))  # resumed at once
        log.append(f"short {i} ends")

    class Finalized:
        def __init__(self, i: int) -> None:
            self.i = i
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            reset(short(self.i))
            if parked:
                parked.pop().send(f"from finalizer {self.i}")

    async def worker() -> None:
        for i in range(6):

            def func(k: Any, i: int = i) -> None:
                parked.append(k)
                Finalized(i)
                gc.collect()  # resumes k from inside func

            got = await shift(func)
            log.append(f"worker got {got!r}")
            Finalized(100 + i)
            gc.collect()  # in the middle of this step: starts a coroutine
            log.append(f"worker step {i} ends")

    reset(worker())
    # A collection started by a finalizer's code does nothing (the collector
    # is busy): what it left is collected here, finalizers resuming the worker.
    for _ in range(20):
        if not parked:
            break
        gc.collect()
    gc.collect()
    gc.collect()
    _assert_clean_state()
    assert not parked
    worker_lines = [line for line in log if line.startswith("worker")]
    assert worker_lines[1::2] == [f"worker step {i} ends" for i in range(6)]
    assert all(line.startswith("worker got 'from finalizer ") for line in worker_lines[::2])
    started = [line.split()[1] for line in log if line.endswith(" starts")]
    ended = [line.split()[1] for line in log if line.endswith(" ends") and "short" in line]
    assert sorted(started) == sorted(ended) == sorted(str(i) for i in [*range(6), *range(100, 106)])


_BOTH_CORES = r"""
import gc
from dneio import reset, shift, RequestQueue, Future, Event, CoroutineClosedError

out = []
ks = []

async def waiter():
    try:
        await shift(ks.append)
    finally:
        out.append("finally")

coro = waiter()
reset(coro)
ks[0].on_cancel(lambda: out.append("callback"))
coro.close()
out.append(ks[0].is_cancelled())
for attempt in range(2):
    try:
        ks[0].send(None)
    except CoroutineClosedError as e:
        out.append(("closed", "waiter" in str(e)))

async def parked():
    await shift(ks.append)

p = parked()
reset(p)
try:
    reset(p)
except RuntimeError as e:
    out.append(("reset refused", "suspended" in str(e)))
ks.pop().send(None)

async def twice():
    s = shift(lambda k: k.send(1))
    out.append(await s)
    try:
        await s
    except RuntimeError as e:
        out.append(("second await", "already awaited" in str(e)))
    req = RequestQueue().request(5)
    req.close()

reset(twice())

future = Future()
future.set_exception(ValueError("stored"))
async def get():
    try:
        await future.get()
    except ValueError as e:
        n = 0
        tb = e.__traceback__
        while tb is not None:
            n += 1
            tb = tb.tb_next
        return n
lengths = {reset(get()) for _ in range(1000)}
out.append(("traceback lengths", len(lengths)))
print(out)
"""


def test_both_cores_agree_on_closing_reset_and_reuse() -> None:
    outputs = []
    for pure in ("", "1"):
        env = dict(os.environ, DNEIO_PURE_PYTHON=pure)
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_BOTH_CORES)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(out.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].strip() == str(
        [
            "callback",
            "finally",
            True,
            ("closed", True),
            ("closed", True),
            ("reset refused", True),
            1,
            ("second await", True),
            ("traceback lengths", 1),
        ]
    )

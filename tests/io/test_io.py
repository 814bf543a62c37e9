"""dneio.io: the native Selector and the host() adapters, on every runner (SPEC section 6)."""

from __future__ import annotations

import errno
import math
import os
import selectors
import socket
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from dneio import reset
from dneio.io import IO, FdBusyError, Selector, host
from dneio.testing import ALL_RUNNERS, Harness, TaskHandle

HOSTS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if n != "native"))


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def selector() -> Iterator[Selector]:
    with Selector() as sel:
        yield sel


def closed_fd() -> int:
    s = socket.socket()
    fd = s.fileno()
    s.close()
    return fd


def _is_cancellation(exc: BaseException | None) -> bool:
    return type(exc).__name__ in ("Cancelled", "CancelledError")


async def wait_for_tasks(
    h: Harness, io: IO, sel: Selector, *tasks: TaskHandle, limit: float = 5.0
) -> None:
    """Natively, drive the selector; on a host runner, let its loop run the tasks."""
    if h.base == "native":
        sel.run(limit, until=lambda: all(t.done for t in tasks))
    else:
        deadline = time.monotonic() + limit
        while not all(t.done for t in tasks) and time.monotonic() < deadline:
            await io.sleep(0.002)
    assert all(t.done for t in tasks), "tasks did not finish in time"


# -- the Selector, with coroutines of every runner parked on it ----------------------
def test_selector_wakes_reader_and_writer(
    dneio_runner: Harness,
    pair: Any,
    selector: Selector,
) -> None:
    a, b = pair

    async def main(h: Harness) -> Any:
        got: list[bytes] = []

        async def reader() -> None:
            await selector.wait_readable(a)
            got.append(a.recv(100))

        async def writer() -> None:
            await selector.wait_writable(a.fileno())
            a.send(b"pong")

        t1 = h.spawn(reader)
        await h.settle()
        assert not t1.done and selector.waiting() == 1
        # Nothing to read yet: one round resumes nobody.
        assert selector.run(0) is False
        await h.settle()
        assert not t1.done
        b.send(b"ping")
        t2 = h.spawn(writer)
        await h.settle()
        assert selector.waiting() == 2
        assert selector.run(1) is True  # both ready; nothing left waiting
        await h.settle()
        assert t1.done and t2.done and got == [b"ping"]
        assert b.recv(100) == b"pong"
        assert selector.waiting() == 0
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_selector_timers_in_deadline_order(dneio_runner: Harness, selector: Selector) -> None:
    async def main(h: Harness) -> Any:
        order: list[int] = []
        late: list[float] = []
        deadlines: dict[int, float] = {}

        async def sleeper(i: int, seconds: float) -> None:
            start = time.monotonic()
            deadlines[i] = start + seconds
            await selector.sleep(seconds)
            late.append(time.monotonic() - start - seconds)
            order.append(i)

        # Settle after each spawn so that the sleeps begin in this order;
        # 1 and 3 nearly tie, 4 is due at once.
        for i, seconds in enumerate([0.03, 0.01, 0.02, 0.01, 0.0]):
            h.spawn(sleeper, i, seconds)
            await h.settle()
        assert selector.run(2) is True
        await h.settle()
        return order, late, deadlines

    order, late, deadlines = dneio_runner.run(main)
    # Woken by deadline, whatever the time the spawns took on a busy machine.
    assert order == sorted(deadlines, key=deadlines.__getitem__)
    assert min(late) >= -0.002  # nobody woke before its time (epoll rounds up to 1 ms)


@HOSTS
def test_selector_cancel_unregisters_fd(
    dneio_runner: Harness,
    pair: Any,
    selector: Selector,
) -> None:
    a, b = pair

    async def main(h: Harness) -> Any:
        got: list[bytes] = []

        async def reader() -> None:
            await selector.wait_readable(a)
            got.append(a.recv(100))

        async def writer() -> None:
            await selector.wait_writable(a)

        t = h.spawn(reader)
        await h.settle()
        t.cancel()
        await h.settle()
        assert t.done and t.cancelled and _is_cancellation(t.exception)
        assert selector.waiting() == 0
        # Nothing is left to wait for: run() returns at once, fd or no fd.
        start = time.monotonic()
        assert selector.run(5) is True
        assert time.monotonic() - start < 1
        # The fd is free again: a new reader is accepted and served.
        t2 = h.spawn(reader)
        await h.settle()
        # Cancelling a writer on the same fd leaves the reader registered.
        w = h.spawn(writer)
        await h.settle()
        assert selector.waiting() == 2
        w.cancel()
        await h.settle()
        assert w.cancelled and selector.waiting() == 1
        b.send(b"data")
        assert selector.run(1) is True
        await h.settle()
        assert t2.done and got == [b"data"]
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_selector_cancel_sleep(dneio_runner: Harness, selector: Selector) -> None:
    async def main(h: Harness) -> Any:
        async def sleeper() -> None:
            await selector.sleep(30)

        t = h.spawn(sleeper)
        await h.settle()
        assert selector.waiting() == 1
        t.cancel()
        await h.settle()
        assert t.cancelled and selector.waiting() == 0
        start = time.monotonic()
        assert selector.run() is True
        assert time.monotonic() - start < 1
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_selector_second_waiter_is_refused(
    dneio_runner: Harness,
    pair: Any,
    selector: Selector,
) -> None:
    a, b = pair

    async def main(h: Harness) -> Any:
        async def reader() -> bytes:
            await selector.wait_readable(a)
            return bytes(a.recv(100))

        first = h.spawn(reader)
        await h.settle()
        second = h.spawn(reader)
        await h.settle()
        assert second.done
        with pytest.raises(FdBusyError, match=f"fd {a.fileno()} to become readable"):
            second.get()
        # The first one is unaffected, and a writer may still wait alongside it.
        assert not first.done and selector.waiting() == 1
        b.send(b"x")
        assert selector.run(1) is True
        await h.settle()
        assert first.get() == b"x"
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_selector_bad_fds(dneio_runner: Harness, selector: Selector) -> None:
    async def main(h: Harness) -> Any:
        with pytest.raises(ValueError, match="negative"):
            await selector.wait_readable(-1)
        with pytest.raises(OSError) as info:
            await selector.wait_writable(closed_fd())
        assert info.value.errno == errno.EBADF
        with pytest.raises(TypeError, match="fileno"):
            await selector.wait_readable("not an fd")  # type: ignore[arg-type]
        closed = socket.socket()
        closed.close()
        with pytest.raises(ValueError, match="closed"):
            await selector.wait_readable(closed)
        with pytest.raises(ValueError, match="non-negative"):
            await selector.sleep(-1)
        with pytest.raises(ValueError):
            await selector.sleep(float("nan"))
        assert selector.waiting() == 0
        assert selector.run(0) is True  # and the selector still works
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_selector_notify_closing(dneio_runner: Harness, pair: Any, selector: Selector) -> None:
    a, _ = pair

    async def main(h: Harness) -> Any:
        async def reader() -> None:
            await selector.wait_readable(a)

        async def writer() -> None:
            await selector.sleep(0)
            await selector.wait_writable(a)  # writable at once, but closed first

        r = h.spawn(reader)
        await h.settle()
        selector.notify_closing(a)
        selector.notify_closing(a)  # nobody left: a no-op
        await h.settle()
        with pytest.raises(OSError, match="closed") as info:
            r.get()
        assert info.value.errno == errno.EBADF
        assert selector.waiting() == 0
        w = h.spawn(writer)
        await h.settle()
        selector.run(0)  # the sleep(0) ends; the writer parks on the fd
        await h.settle()
        selector.notify_closing(a.fileno())
        await h.settle()
        with pytest.raises(OSError):
            w.get()
        return "ok"

    assert dneio_runner.run(main) == "ok"


# -- the Selector on its own ----------------------------------------------------------
@pytest.mark.parametrize(
    "kind",
    [
        name
        for name in ("EpollSelector", "PollSelector", "SelectSelector", "KqueueSelector")
        if hasattr(selectors, name)
    ],
)
def test_fd_closed_under_a_waiter_fails_it(kind: str) -> None:
    """Closing an fd without notify_closing: the waiter gets an error, it does not hang."""
    a, b = socket.socketpair()
    other_a, other_b = socket.socketpair()
    results: dict[str, Any] = {}

    async def waiter(name: str, sock: socket.socket) -> None:
        try:
            await sel.wait_readable(sock.fileno())
            results[name] = "woken"
        except OSError as exc:
            results[name] = exc

    with Selector(getattr(selectors, kind)(), check_interval=0.05) as sel:
        reset(waiter("closed", a))
        reset(waiter("other", other_a))
        a.close()
        start = time.monotonic()
        sel.run(2, until=lambda: "closed" in results)
        assert time.monotonic() - start < 1.5
        outcome = results["closed"]
        if kind == "PollSelector":
            # poll() reports the closed fd as ready (POLLNVAL): reading will tell.
            assert outcome == "woken" or outcome.errno == errno.EBADF
        else:
            assert isinstance(outcome, OSError) and outcome.errno == errno.EBADF
            assert "notify_closing" in str(outcome)
        # The other waiter is untouched and still served.
        assert "other" not in results and sel.waiting() == 1
        other_b.send(b"x")
        assert sel.run(1) is True
        assert results["other"] == "woken"
    for s in (b, other_a, other_b):
        s.close()


def test_run_until_and_timeout(pair: Any, selector: Selector) -> None:
    a, b = pair
    done: list[str] = []

    async def reader() -> None:
        await selector.wait_readable(a)
        done.append("read")

    async def ticker() -> None:
        for _ in range(100):
            await selector.sleep(0.001)
        done.append("ticked")

    reset(reader())
    start = time.monotonic()
    assert selector.run(0.05) is False  # still waiting
    assert 0.045 <= time.monotonic() - start < 1
    reset(ticker())
    ticks = 0

    def three_ticks() -> bool:
        nonlocal ticks
        ticks += 1
        return ticks > 3

    assert selector.run(5, until=three_ticks) is True
    assert done == [] and selector.waiting() == 2
    b.send(b"x")
    assert selector.run(5) is True
    assert done == ["read", "ticked"]


def test_a_far_timer_is_waited_for_a_day_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel refuses a timeout of a month (epoll) or more: each wait stops at a day."""
    from dneio._io import _selector

    now = 1000.0
    timeouts: list[float | None] = []

    class Kernel(selectors.SelectSelector):
        def select(self, timeout: float | None = None) -> list[Any]:
            nonlocal now
            timeouts.append(timeout)
            assert timeout is not None, "would block forever"
            now += timeout  # the wait runs to its end: nothing is registered
            return []

    monkeypatch.setattr(_selector, "time", types.SimpleNamespace(monotonic=lambda: now))
    woken: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await sel.sleep(seconds)
        woken.append((name, now))

    month = 30 * 24 * 3600
    with Selector(Kernel()) as sel:
        reset(sleeper("monthly", month))
        reset(sleeper("tick", 0.05))
        assert sel.run() is True
    assert [name for name, _ in woken] == ["tick", "monthly"]
    assert woken[0][1] == pytest.approx(1000.05)
    assert woken[1][1] == pytest.approx(1000 + month)  # on time, not a day late
    assert timeouts[0] == pytest.approx(0.05)
    assert max(t for t in timeouts if t is not None) <= 24 * 3600
    assert len(timeouts) <= 33


@pytest.mark.parametrize(
    "kind",
    [
        name
        for name in ("EpollSelector", "PollSelector", "SelectSelector")
        if hasattr(selectors, name)
    ],
)
@pytest.mark.parametrize("seconds", [30 * 24 * 3600, 1e10, 1e300, math.inf])
def test_a_far_timer_leaves_run_serving_the_others(kind: str, seconds: float, pair: Any) -> None:
    """Blocking in the kernel until a reader's fd is ready, with a far timer pending."""
    a, b = pair
    done: list[str] = []

    async def far() -> None:
        try:
            await sel.sleep(seconds)
        except RuntimeError:  # closed under it, at the end
            return
        done.append("far")

    async def reader() -> None:
        await sel.wait_readable(a)
        done.append("read")

    # No fd check: the wait in the kernel is the timer's alone.
    with Selector(getattr(selectors, kind)(), check_interval=None) as sel:
        reset(far())
        reset(reader())
        sender = threading.Timer(0.05, b.send, (b"x",))
        sender.start()
        try:
            assert sel.run(until=lambda: "read" in done) is True
        finally:
            sender.join()
        assert done == ["read"] and sel.waiting() == 1


def test_run_is_not_reentrant_and_belongs_to_its_thread(pair: Any, selector: Selector) -> None:
    a, b = pair
    seen: list[BaseException] = []

    async def nested() -> None:
        await selector.sleep(0)
        try:
            selector.run(0)
        except RuntimeError as exc:
            seen.append(exc)

    reset(nested())
    selector.run(1)
    assert "already running" in str(seen[0])

    async def reader() -> None:
        await selector.wait_readable(a)

    reset(reader())
    thread = threading.Thread(target=selector.run, args=(5,))
    thread.start()
    try:
        time.sleep(0.05)
        with pytest.raises(RuntimeError, match="belongs to the thread"):
            reset(selector.sleep(0))
    finally:
        b.send(b"x")
        thread.join(5)
    assert not thread.is_alive()


def test_errors_of_native_coroutines_surface_from_run(selector: Selector) -> None:
    order: list[str] = []

    async def failing(name: str) -> None:
        await selector.sleep(0)
        order.append(name)
        raise KeyError(name)

    async def fine() -> None:
        await selector.sleep(0)
        order.append("fine")

    reset(failing("one"))
    reset(fine())
    with pytest.raises(KeyError):
        selector.run(1)
    assert order == ["one", "fine"]  # the failure did not starve the others
    reset(failing("two"))
    reset(failing("three"))
    with pytest.raises(ExceptionGroup) as group:
        selector.run(1)
    assert [e.args[0] for e in group.value.exceptions] == ["two", "three"]
    assert selector.waiting() == 0


def test_independent_selectors(pair: Any) -> None:
    a, b = pair
    got: list[str] = []

    async def read(sel: Selector, name: str) -> None:
        await sel.wait_readable(a)
        got.append(name)

    with Selector() as one, Selector() as two:
        reset(read(one, "one"))
        reset(read(two, "two"))  # the same fd, on another selector: not busy
        b.send(b"x")
        assert one.run(1) is True
        assert got == ["one"] and two.waiting() == 1
        assert two.run(1) is True
        assert got == ["one", "two"]


def test_close_wakes_waiters(pair: Any) -> None:
    a, _ = pair
    errors: list[BaseException] = []

    async def waiter() -> None:
        try:
            await sel.wait_readable(a)
        except RuntimeError as exc:
            errors.append(exc)

    sel = Selector()
    reset(waiter())
    sel.close()
    assert "closed" in str(errors[0])
    sel.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        reset(sel.sleep(0))
    with pytest.raises(RuntimeError, match="closed"):
        sel.run()
    assert "closed" in repr(sel)


# -- host(): the same operations from the running loop ---------------------------------
def test_host_picks_the_running_loop(dneio_runner: Harness, selector: Selector) -> None:
    async def main(h: Harness) -> Any:
        io = host(native=selector)
        if h.base == "native":
            assert io is selector
            with pytest.raises(RuntimeError, match="host\\(native="):
                host()
        else:
            assert io is host() and io is not selector
            assert h.base in repr(io)
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_host_outside_any_runner() -> None:
    with pytest.raises(RuntimeError, match="no trio, asyncio or Twisted loop"):
        host()


def test_io_echo_over_tcp(dneio_runner: Harness, selector: Selector) -> None:
    """The demo's protocol, with the harness's own tasks."""
    from dneio._tools._demo import Group, Report, echo_session

    async def main(h: Harness) -> Any:
        io = host(native=selector)
        report = Report(h.name, clients=3, messages=20)

        async def run(coro: Any) -> None:
            await coro

        group = Group(lambda coro: h.spawn(run, coro))
        session = h.spawn(echo_session, io, group, report)
        await wait_for_tasks(h, io, selector, session)
        session.get()
        return report

    report = dneio_runner.run(main)
    assert report.ok, report.errors
    assert report.echoed == 60 and report.in_order and report.open_at_once >= 1


def test_io_readable_writable(dneio_runner: Harness, pair: Any, selector: Selector) -> None:
    a, b = pair

    async def main(h: Harness) -> Any:
        io = host(native=selector)
        got: list[bytes] = []

        async def reader() -> None:
            await io.wait_readable(a)
            got.append(a.recv(100))

        async def writer() -> None:
            await io.wait_writable(b)
            b.send(b"hello")

        r = h.spawn(reader)
        await h.settle()
        assert not r.done
        w = h.spawn(writer)
        await wait_for_tasks(h, io, selector, r, w)
        assert got == [b"hello"]
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_io_timers_order(dneio_runner: Harness, selector: Selector) -> None:
    async def main(h: Harness) -> Any:
        io = host(native=selector)
        order: list[int] = []
        deadlines: dict[int, float] = {}

        async def sleeper(i: int, seconds: float) -> None:
            start = time.monotonic()
            deadlines[i] = start + seconds
            await io.sleep(seconds)
            assert time.monotonic() - start >= seconds - 0.002
            order.append(i)

        tasks = []
        for i, seconds in enumerate([0.08, 0.02, 0.05, 0.0]):
            tasks.append(h.spawn(sleeper, i, seconds))
            await h.settle()
        await wait_for_tasks(h, io, selector, *tasks)
        for t in tasks:
            t.get()
        return order, deadlines

    order, deadlines = dneio_runner.run(main)
    # Timers fire in the order of their deadlines (on a quiet machine,
    # [3, 1, 2, 0]; on a loaded one the first sleeper may be due before the
    # last one has even started).
    assert sorted(order) == [0, 1, 2, 3]
    assert order == sorted(order, key=deadlines.__getitem__)


def test_io_second_waiter_is_refused(dneio_runner: Harness, pair: Any, selector: Selector) -> None:
    a, b = pair

    async def main(h: Harness) -> Any:
        io = host(native=selector)

        async def reader() -> bytes:
            await io.wait_readable(a)
            return bytes(a.recv(100))

        async def writer() -> None:
            await io.wait_writable(a)

        first = h.spawn(reader)
        await h.settle()
        second = h.spawn(reader)
        await h.settle()
        assert second.done
        with pytest.raises(FdBusyError, match="readable"):
            second.get()
        w = h.spawn(writer)  # the other direction is free
        b.send(b"x")
        await wait_for_tasks(h, io, selector, first, w)
        assert first.get() == b"x"
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_io_bad_fds(dneio_runner: Harness, selector: Selector) -> None:
    async def main(h: Harness) -> Any:
        io = host(native=selector)
        with pytest.raises(ValueError):
            await io.wait_readable(-1)
        for wait in (io.wait_readable, io.wait_writable):
            with pytest.raises(OSError) as info:
                await wait(closed_fd())
            assert info.value.errno == errno.EBADF
        with pytest.raises(TypeError):
            await io.wait_writable(None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await io.sleep(-0.5)
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_io_notify_closing(dneio_runner: Harness, selector: Selector) -> None:
    a, b = socket.socketpair()

    async def main(h: Harness) -> Any:
        io = host(native=selector)

        async def reader() -> None:
            await io.wait_readable(a)

        r = h.spawn(reader)
        await h.settle()
        assert not r.done
        io.notify_closing(a)
        a.close()
        await wait_for_tasks(h, io, selector, r)
        with pytest.raises(OSError) as info:
            r.get()
        assert info.value.errno == errno.EBADF
        return "ok"

    try:
        assert dneio_runner.run(main) == "ok"
    finally:
        a.close()
        b.close()


@HOSTS
def test_io_cancel_mid_wait(dneio_runner: Harness, pair: Any) -> None:
    a, b = pair

    async def main(h: Harness) -> Any:
        io = host()
        got: list[bytes] = []

        async def reader() -> None:
            await io.wait_readable(a)
            got.append(a.recv(100))

        async def sleeper() -> None:
            # Long enough not to be due before the cancellation on a busy machine.
            await io.sleep(0.2)
            got.append(b"woke")

        r = h.spawn(reader)
        s = h.spawn(sleeper)
        await h.settle()
        r.cancel()
        s.cancel()
        await h.settle()
        assert r.cancelled and s.cancelled
        # The fd was given back at once: a new waiter is accepted...
        r2 = h.spawn(reader)
        await h.settle()
        assert not r2.done
        await io.sleep(0.3)  # ...and the cancelled ones stay asleep
        assert got == []
        b.send(b"late")
        await wait_for_tasks(h, io, Selector(), r2)
        assert got == [b"late"]
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_io_from_a_native_coroutine_inside_a_loop(dneio_runner: Harness, pair: Any) -> None:
    """reset() inside a task: the coroutine waits through the host loop all the same."""
    a, b = pair

    async def main(h: Harness) -> Any:
        io = host()
        got: list[bytes] = []

        async def native_reader() -> None:
            await io.wait_readable(a)
            got.append(a.recv(100))

        reset(native_reader())
        await io.sleep(0.005)
        assert got == []
        b.send(b"x")
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            await io.sleep(0.002)
        assert got == [b"x"]
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_asyncio_host_belongs_to_its_loop() -> None:
    import asyncio

    async def grab() -> IO:
        return host()

    io = asyncio.run(grab())

    async def misuse() -> None:
        await io.sleep(0)

    with pytest.raises(RuntimeError, match="another asyncio loop"):
        asyncio.run(misuse())


def test_fd_argument_checks() -> None:
    from dneio._io._fd import fileno

    assert fileno(3) == 3

    class Weird:
        def fileno(self) -> str:
            return "3"

    with pytest.raises(TypeError, match="not an int"):
        fileno(Weird())  # type: ignore[arg-type]
    r, w = os.pipe()
    try:
        with open(r, closefd=False) as f:
            assert fileno(f) == r
    finally:
        os.close(r)
        os.close(w)


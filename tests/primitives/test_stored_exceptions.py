"""An exception a primitive stores is raised afresh at every wait, as asyncio.Future does.

Raising the same exception object again appends the raiser's frames to its
traceback; without care, a failed Future or a closed Event waited on
100,000 times carries a traceback of hundreds of thousands of entries, and
every waiter sees the frames of the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from dneio import ClosedError, Event, Future, RequestQueue, reset, shift
from dneio.testing import Harness


def _tb_length(exc: BaseException) -> int:
    n = 0
    tb = exc.__traceback__
    while tb is not None:
        n += 1
        tb = tb.tb_next
    return n


def _tb_functions(exc: BaseException) -> set[str]:
    names = set()
    tb = exc.__traceback__
    while tb is not None:
        names.add(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def _failed_future() -> Future[int]:
    future: Future[int] = Future()
    try:
        raise ValueError("stored")
    except ValueError as exc:
        future.set_exception(exc)
    return future


def _closed_event() -> Event:
    event = Event()
    event.close()
    return event


def _closed_queue() -> RequestQueue[int, int]:
    queue: RequestQueue[int, int] = RequestQueue()
    queue.close()
    return queue


async def _fetch_any(queue: RequestQueue[int, int]) -> Any:
    return queue.fetch_any()


WAITS: dict[str, tuple[Callable[[], Any], Callable[[Any], Awaitable[Any]]]] = {
    "Future.get": (_failed_future, lambda f: f.get()),
    "Future.get_cb": (_failed_future, lambda f: shift(f.get_cb)),
    "Event.wait": (_closed_event, lambda e: e.wait()),
    "RequestQueue.request": (_closed_queue, lambda q: q.request(1)),
    "RequestQueue.get_one": (_closed_queue, lambda q: q.get_one()),
    "RequestQueue.get_many": (_closed_queue, lambda q: q.get_many()),
    "RequestQueue.fetch_any": (_closed_queue, _fetch_any),
}


@pytest.mark.parametrize("wait", list(WAITS))
def test_100k_native_waits_keep_the_traceback_short(wait: str) -> None:
    make, op = WAITS[wait]
    obj = make()
    lengths: set[int] = set()

    async def waiter() -> None:
        try:
            await op(obj)
        except (ValueError, ClosedError) as exc:
            lengths.add(_tb_length(exc))

    for _ in range(100_000):
        reset(waiter())
    assert len(lengths) == 1
    assert max(lengths) < 10


@pytest.mark.parametrize("wait", list(WAITS))
def test_waits_on_every_runner_keep_the_traceback_short(dneio_runner: Harness, wait: str) -> None:
    make, op = WAITS[wait]

    async def main(h: Harness) -> Any:
        obj = make()
        lengths: set[int] = set()
        for _ in range(2000):
            try:
                await op(obj)
            except (ValueError, ClosedError) as exc:
                lengths.add(_tb_length(exc))
        return lengths

    lengths = dneio_runner.run(main)
    assert len(lengths) == 1 and max(lengths) < 20


def test_waiters_woken_together_do_not_share_frames(dneio_runner: Harness) -> None:
    """Closing wakes every waiter with the same exception: each sees only its own frames."""

    async def main(h: Harness) -> Any:
        event = Event()
        future: Future[None] = Future()
        queue: RequestQueue[int, int] = RequestQueue()
        seen: dict[str, list[set[str]]] = {"event": [], "future": [], "queue": []}

        def make_waiter(i: int, kind: str, op: Callable[[], Awaitable[Any]]) -> Any:
            async def waiter() -> None:
                try:
                    await op()
                except (ValueError, ClosedError) as exc:
                    seen[kind].append(_tb_functions(exc))

            waiter.__code__ = waiter.__code__.replace(co_name=f"waiter_{kind}_{i}")
            return waiter

        for i in range(20):
            h.spawn(make_waiter(i, "event", event.wait))
            h.spawn(make_waiter(i, "future", future.get))
            h.spawn(make_waiter(i, "queue", lambda: queue.request(0)))
        await h.settle()
        event.close()
        future.set_exception(ValueError("failed"))
        queue.close()
        await h.settle()
        return seen

    seen = dneio_runner.run(main)
    for kind, frames in seen.items():
        assert len(frames) == 20
        for names in frames:
            own = [n for n in names if n.startswith("waiter_")]
            assert len(own) == 1, (kind, sorted(names))


def test_a_queued_throw_keeps_the_traceback_the_exception_had_when_thrown() -> None:
    """Beyond MAX_DEPTH nested resumptions, throws are queued: each still gets the
    exception as it was when thrown, not as the waiters before it left it."""
    from dneio import lowlevel

    event = Event()
    lengths: list[int] = []
    links: list[Any] = []

    async def waiter() -> None:
        try:
            await event.wait()
        except ClosedError as exc:
            lengths.append(_tb_length(exc))

    async def link(i: int) -> None:
        await shift(links.append)
        if i + 1 < len(links):
            links[i + 1].send(None)
        else:
            event.close()  # deep down: these resumptions are queued

    for _ in range(50):
        reset(waiter())
    for i in range(lowlevel.MAX_DEPTH + 5):
        reset(link(i))
    links[0].send(None)
    assert len(lengths) == 50
    assert len(set(lengths)) == 1

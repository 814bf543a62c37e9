"""first_of on every runner: the first operation wins, the rest withdraw without losing anything."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from dneio import (
    Channel,
    ContinuationSpentError,
    EndOfChannel,
    Event,
    Future,
    Lock,
    RequestCancelledError,
    RequestQueue,
    first_of,
    shift,
)
from dneio.testing import Harness


def needs_cancellation(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")


def test_first_to_complete_wins_and_the_loser_takes_nothing(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, int, str]:
        ch: Channel[str] = Channel(2)
        ev = Event()
        racer = h.spawn(first_of, ch.receive_cb, ev.wait_cb)
        await h.settle()
        ev.set()
        await h.settle()
        await ch.send("kept")  # the withdrawn receive must not take it
        return racer.get(), len(ch), await ch.receive()

    assert dneio_runner.run(main) == ((1, None), 1, "kept")


def test_receive_wins(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        ch: Channel[int] = Channel(0)
        ev = Event()
        racer = h.spawn(first_of, ev.wait_cb, ch.receive_cb)
        await h.settle()
        await ch.send(5)
        await h.settle()
        ev.set()
        return racer.get()

    assert dneio_runner.run(main) == (1, 5)


def test_an_operation_ready_at_once_stops_the_later_ones_starting(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, int]:
        ev = Event()
        ev.set()
        ch: Channel[str] = Channel(1)
        result = await first_of(ev.wait_cb, partial(ch.send_cb, "never sent"))
        return result, len(ch)

    assert dneio_runner.run(main) == ((0, None), 0)


def test_a_withdrawn_send_puts_nothing_in(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, list[str]]:
        ch: Channel[str] = Channel(1)
        await ch.send("old")
        ev = Event()
        racer = h.spawn(first_of, partial(ch.send_cb, "new"), ev.wait_cb)
        await h.settle()
        ev.set()
        await h.settle()
        first = await ch.receive()
        ch.close()
        return racer.get(), [first] + [x async for x in ch]

    assert dneio_runner.run(main) == ((1, None), ["old"])


def test_a_send_that_gets_in_wins(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, str]:
        ch: Channel[str] = Channel(1)
        await ch.send("old")
        ev = Event()
        racer = h.spawn(first_of, partial(ch.send_cb, "new"), ev.wait_cb)
        await h.settle()
        old = await ch.receive()  # makes room: "new" goes in, the send wins
        await h.settle()
        ev.set()
        assert old == "old"
        return racer.get(), await ch.receive()

    assert dneio_runner.run(main) == ((0, None), "new")


def test_a_withdrawn_request_is_taken_back(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, list[Any]]:
        q: RequestQueue[str, str] = RequestQueue()
        ev = Event()
        racer = h.spawn(first_of, partial(q.request_cb, "question"), ev.wait_cb)
        await h.settle()
        ev.set()
        await h.settle()
        return racer.get(), q.fetch_any()

    assert dneio_runner.run(main) == ((1, None), [])


def test_reply_to_a_withdrawn_request_already_taken_is_refused(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, bool, str]:
        q: RequestQueue[str, str] = RequestQueue()
        ev = Event()
        racer = h.spawn(first_of, partial(q.request_cb, "question"), ev.wait_cb)
        await h.settle()
        _, k = await q.get_one()
        ev.set()
        await h.settle()
        with pytest.raises(RequestCancelledError) as info:
            k.send("too late")
        return racer.get(), k.is_cancelled(), info.value.value

    assert dneio_runner.run(main) == ((1, None), True, "too late")


def test_an_answered_request_wins(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        q: RequestQueue[str, str] = RequestQueue()
        ev = Event()
        racer = h.spawn(first_of, ev.wait_cb, partial(q.request_cb, "ping"))
        await h.settle()
        val, k = await q.get_one()
        k.send(val + " pong")
        await h.settle()
        ev.set()
        return racer.get()

    assert dneio_runner.run(main) == (1, "ping pong")


def test_withdrawn_lock_acquire_does_not_keep_the_lock(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, bool]:
        lock = Lock()
        await lock.acquire()
        ev = Event()
        racer = h.spawn(first_of, lock.acquire_cb, ev.wait_cb)
        await h.settle()
        ev.set()
        await h.settle()
        lock.release()
        return racer.get(), lock.locked()

    assert dneio_runner.run(main) == ((1, None), False)


def test_an_exception_wins_too(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> str:
        ch: Channel[int] = Channel(1)
        fut: Future[int] = Future()
        racer = h.spawn(first_of, fut.get_cb, ch.receive_cb)
        await h.settle()
        ch.close()
        await h.settle()
        with pytest.raises(EndOfChannel):
            racer.get()
        fut.set(1)  # the withdrawn get is not resumed
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_cancelling_the_waiting_task_withdraws_every_operation(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, list[Any]]:
        ch: Channel[str] = Channel(1)
        q: RequestQueue[int, int] = RequestQueue()
        racer = h.spawn(first_of, ch.receive_cb, partial(q.request_cb, 1))
        await h.settle()
        racer.cancel()
        await h.settle()
        await ch.send("item")
        return racer.cancelled, [len(ch), q.fetch_any()]

    assert dneio_runner.run(main) == (True, [1, []])


def test_shield_commits_the_race(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[Any, int]:
        held: list[Any] = []
        ch: Channel[str] = Channel(1)

        def committed_op(k: Any) -> None:
            k.shield()  # started something that cannot be undone
            held.append(k)

        racer = h.spawn(first_of, committed_op, ch.receive_cb)
        await h.settle()
        # (Not on anyio-asyncio: a delayed cancellation leaks out of its anyio
        # scope there; see test_compat.py::test_shielded_cancel_stays_in_its_scope.)
        if h.cancellable and h.name != "anyio-asyncio":
            racer.cancel()  # too late: the race is committed
            await h.settle()
        await ch.send("stays")  # the receive was withdrawn at once
        held[0].send("done")
        await h.settle()
        return racer.get(), len(ch)

    assert dneio_runner.run(main) == ((0, "done"), 1)


def test_a_branch_is_single_shot(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        branches: list[Any] = []
        racer = h.spawn(first_of, branches.append)
        await h.settle()
        branches[0].send("once")
        with pytest.raises(ContinuationSpentError):
            branches[0].send("twice")
        await h.settle()
        return racer.get()

    assert dneio_runner.run(main) == (0, "once")


def test_coroutines_resumed_while_starting_operations_cannot_decide_the_race(
    dneio_runner: Harness,
) -> None:
    """Starting operation #1 hands an item to a waiting receiver, whose code then
    sends to the channel operation #0 waits on.  That code runs only after every
    operation has started, by which time #1 has won: #0's item stays in its channel."""

    async def main(h: Harness) -> tuple[Any, int, list[str]]:
        a: Channel[str] = Channel(1)
        b: Channel[str] = Channel(1)
        log: list[str] = []

        async def relay() -> None:
            item = await b.receive()
            log.append(f"relay got {item}")
            await a.send("from relay")

        h.spawn(relay)
        await h.settle()
        result = await first_of(a.receive_cb, partial(b.send_cb, "to relay"))
        await h.settle()
        return result, len(a), log

    assert dneio_runner.run(main) == ((1, None), 1, ["relay got to relay"])


def test_first_of_needs_operations(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> str:
        with pytest.raises(ValueError):
            await first_of()
        with pytest.raises(TypeError, match="operations"):
            await first_of(42)  # type: ignore[arg-type]
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_an_operation_that_raises_withdraws_the_started_ones(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[int, str]:
        ch: Channel[str] = Channel(1)

        def broken(k: Any) -> None:
            raise RuntimeError("could not start")

        with pytest.raises(RuntimeError, match="could not start"):
            await first_of(ch.receive_cb, broken)
        await ch.send("kept")
        return len(ch), await shift(ch.receive_cb)

    assert dneio_runner.run(main) == (1, "kept")


@pytest.mark.parametrize("capacity", [0, 1])
@pytest.mark.parametrize("order", ["send first", "receive first"])
def test_a_send_that_wins_over_its_own_receive_loses_no_item(
    dneio_runner: Harness, capacity: int, order: str
) -> None:
    """One task races a send and a receive on the same channel.

    Whichever of the two is started first, the other meets it; the send wins
    the race and withdraws the receive, so the item stays in the channel and
    the next receiver gets it, once.
    """

    async def main(h: Harness) -> list[Any]:
        ch: Channel[str] = Channel(capacity)
        if capacity and order == "send first":
            await ch.send("first")  # the buffer is full: the send waits for room
        # (Started first, a receive waits only while the buffer is empty.)
        ops = [partial(ch.send_cb, "item"), ch.receive_cb]
        if order == "receive first":
            index, value = await first_of(*reversed(ops))
            won = (1 - index, value)
        else:
            won = await first_of(*ops)
        got = [await ch.receive() for _ in range(2 if capacity and order == "send first" else 1)]
        return [won, got]

    prefilled = capacity and order == "send first"
    expected = [(0, None), ["first", "item"]] if prefilled else [(0, None), ["item"]]
    assert dneio_runner.run(main) == expected

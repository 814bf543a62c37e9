"""Lock and Channel on every runner: FIFO hand-off, bounded buffering, close, cancellation."""

from __future__ import annotations

from typing import Any

import pytest

from dneio import Channel, ClosedError, EndOfChannel, Lock, reset
from dneio.testing import Harness


async def spawn_each(h: Harness, fn: Any, args: Any) -> list[Any]:
    # Settle after each spawn: trio starts new tasks in random order.
    handles = []
    for arg in args:
        handles.append(h.spawn(fn, arg))
        await h.settle()
    return handles


def needs_cancellation(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")


# -- Lock -----------------------------------------------------------------------------


def test_lock_is_handed_over_in_arrival_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        lock = Lock()
        log: list[str] = []

        async def worker(i: int) -> None:
            async with lock:
                log.append(f"in {i}")
                assert lock.locked()
                log.append(f"out {i}")

        await lock.acquire()
        await spawn_each(h, worker, range(4))
        assert log == []
        lock.release()
        await h.settle()
        assert not lock.locked()
        return log

    expected = [f"{what} {i}" for i in range(4) for what in ("in", "out")]
    assert dneio_runner.run(main) == expected


def test_lock_cannot_be_overtaken(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        lock = Lock()
        log: list[str] = []

        async def waiter(name: str) -> None:
            await lock.acquire()
            log.append(name)

        await lock.acquire()
        await spawn_each(h, waiter, ["first"])
        lock.release()  # handed to "first" even if it has not run yet
        assert not lock.try_acquire()
        await h.settle()
        lock.release()
        assert lock.try_acquire()
        lock.release()
        return log

    assert dneio_runner.run(main) == ["first"]


def test_release_of_unheld_lock_raises(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> str:
        lock = Lock()
        with pytest.raises(RuntimeError, match="not held"):
            lock.release()
        return repr(lock)

    assert dneio_runner.run(main) == "<Lock unlocked>"


def test_cancelled_lock_waiter_is_skipped_and_the_lock_never_lost(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[list[int], bool, bool]:
        lock = Lock()
        got: list[int] = []

        async def worker(i: int) -> None:
            async with lock:
                got.append(i)

        await lock.acquire()
        handles = await spawn_each(h, worker, range(5))
        handles[1].cancel()
        handles[3].cancel()
        await h.settle()
        lock.release()
        await h.settle()
        return got, lock.locked(), handles[1].cancelled and handles[3].cancelled

    assert dneio_runner.run(main) == ([0, 2, 4], False, True)


def test_lock_holder_cancelled_right_after_hand_off_releases_it(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, bool, list[str]]:
        lock = Lock()
        log: list[str] = []

        async def worker(_: Any) -> None:
            async with lock:
                log.append("got it")
                await h.settle()  # a checkpoint: the cancellation lands here
                log.append("not reached")

        await lock.acquire()
        [handle] = await spawn_each(h, worker, [None])
        lock.release()
        handle.cancel()
        await h.settle()
        return handle.cancelled, lock.locked(), log

    assert dneio_runner.run(main) == (True, False, ["got it"])


# -- Channel ----------------------------------------------------------------------------


def test_channel_keeps_order_and_bounds_the_buffer(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[int], list[int]]:
        ch: Channel[int] = Channel(2)
        progress: list[int] = []

        async def producer() -> None:
            for i in range(6):
                await ch.send(i)
                progress.append(i)
            ch.close()

        h.spawn(producer)
        await h.settle()
        assert progress == [0, 1]  # the third send waits for room
        assert len(ch) == 2
        received = [item async for item in ch]
        return received, progress

    assert dneio_runner.run(main) == ([0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5])


def test_waiting_senders_go_in_in_arrival_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        ch: Channel[str] = Channel(1)
        await ch.send("first")
        await spawn_each(h, ch.send, ["a", "b", "c"])
        out = [await ch.receive() for _ in range(4)]
        return out

    assert dneio_runner.run(main) == ["first", "a", "b", "c"]


def test_waiting_receivers_are_served_in_arrival_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[Any]:
        ch: Channel[int] = Channel(5)
        receivers = await spawn_each(h, lambda _: ch.receive(), range(3))
        for i in (10, 11, 12):
            await ch.send(i)
        await h.settle()
        return [r.get() for r in receivers]

    assert dneio_runner.run(main) == [10, 11, 12]


def test_rendezvous_channel(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[int], list[int]]:
        ch: Channel[int] = Channel(0)
        sent: list[int] = []

        async def producer() -> None:
            for i in range(3):
                await ch.send(i)
                sent.append(i)

        h.spawn(producer)
        await h.settle()
        assert sent == []
        got = [await ch.receive() for _ in range(3)]
        await h.settle()
        return got, sent

    assert dneio_runner.run(main) == ([0, 1, 2], [0, 1, 2])


def test_close_fails_waiting_senders_and_ends_receivers_after_the_buffer(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> list[Any]:
        ch: Channel[str] = Channel(1)
        await ch.send("kept")
        [blocked] = await spawn_each(h, ch.send, ["refused"])
        ch.close()
        ch.close()  # twice is fine
        await h.settle()
        with pytest.raises(ClosedError):
            blocked.get()
        with pytest.raises(ClosedError):
            await ch.send("late")
        with pytest.raises(ClosedError):
            ch.try_send("late")
        first = await ch.receive()
        with pytest.raises(EndOfChannel):
            await ch.receive()
        return [first, ch.is_closed(), [x async for x in ch]]

    assert dneio_runner.run(main) == ["kept", True, []]


def test_close_wakes_waiting_receivers(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        ch: Channel[int] = Channel(3)

        async def consume(_: Any) -> str:
            async for _item in ch:
                return "got an item"
            return "ended"

        receivers = await spawn_each(h, consume, range(2))
        ch.close()
        await h.settle()
        return [r.get() for r in receivers]

    assert dneio_runner.run(main) == ["ended", "ended"]


def test_try_send(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[Any]:
        ch: Channel[int] = Channel(1)
        results = [ch.try_send(1), ch.try_send(2)]
        [receiver] = await spawn_each(h, lambda _: ch.receive(), [None])
        results.append(receiver.get() if receiver.done else "pending")
        results.append(await ch.receive() if len(ch) else None)
        return results

    assert dneio_runner.run(main) == [True, False, 1, None]


def test_bad_capacity() -> None:
    with pytest.raises(ValueError):
        Channel(-1)


def test_cancelled_receiver_does_not_swallow_an_item(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, Any]:
        ch: Channel[str] = Channel(1)
        doomed, survivor = await spawn_each(h, lambda _: ch.receive(), range(2))
        doomed.cancel()
        await h.settle()
        await ch.send("item")
        await h.settle()
        return doomed.cancelled, survivor.get()

    assert dneio_runner.run(main) == (True, "item")


def test_close_with_waiting_and_cancelled_senders(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[list[str], list[str]]:
        ch: Channel[str] = Channel(1)
        await ch.send("x")
        handles = await spawn_each(h, ch.send, ["a", "b", "c"])
        handles[1].cancel()
        await h.settle()
        ch.close()
        await h.settle()
        fates = []
        for handle in handles:
            if handle.cancelled:
                fates.append("cancelled")
                continue
            with pytest.raises(ClosedError):
                handle.get()
            fates.append("refused")
        return fates, [item async for item in ch]

    assert dneio_runner.run(main) == (["refused", "cancelled", "refused"], ["x"])


def test_cancelled_sender_item_never_arrives(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, list[str]]:
        ch: Channel[str] = Channel(1)
        await ch.send("x")
        handles = await spawn_each(h, ch.send, ["a", "b", "c"])
        handles[1].cancel()
        await h.settle()
        received = [await ch.receive() for _ in range(3)]
        await h.settle()
        assert handles[0].get() is None and handles[2].get() is None
        assert len(ch) == 0
        return handles[1].cancelled, received

    assert dneio_runner.run(main) == (True, ["x", "a", "c"])


def test_native_pipeline_through_channels() -> None:
    a: Channel[int] = Channel(1)
    b: Channel[int] = Channel(1)
    out: list[int] = []

    async def double() -> None:
        async for item in a:
            await b.send(item * 2)
        b.close()

    async def sink() -> None:
        async for item in b:
            out.append(item)

    reset(double())
    reset(sink())

    async def source() -> None:
        for i in range(5):
            await a.send(i)
        a.close()

    reset(source())
    assert out == [0, 2, 4, 6, 8]

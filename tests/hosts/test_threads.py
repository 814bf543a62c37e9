"""Continuations resumed from other threads (SPEC section 3)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from dneio import shift
from dneio.testing import ALL_RUNNERS, Harness

HOSTS = pytest.mark.dneio_runners(*(n for n in ALL_RUNNERS if n != "native"))
TASKS = 200


@HOSTS
def test_resumed_from_other_threads_hops_to_the_loop_thread(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        loop_thread = threading.get_ident()
        parked: list[Any] = []
        got: list[tuple[int, int, int]] = []  # (task, value, thread it ran on)

        async def waiter(i: int) -> None:
            v = await shift(parked.append)
            got.append((i, v, threading.get_ident()))

        handles = [h.spawn(waiter, i) for i in range(TASKS)]
        await h.settle()
        assert len(parked) == TASKS
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def resume_some(ks: list[Any]) -> None:
            barrier.wait()
            for k in ks:
                try:
                    k.send(id(k))
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

        threads = [
            threading.Thread(target=resume_some, args=(parked[j::4],)) for j in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(100):
            await h.settle()
            if len(got) == TASKS:
                break
            await _sleep_a_little(h)
        assert errors == []
        assert sorted(i for i, _, _ in got) == list(range(TASKS))  # each exactly once
        assert {thread for _, _, thread in got} == {loop_thread}
        assert {v for _, v, _ in got} == {id(k) for k in parked}
        for handle in handles:
            handle.get()
        return "ok"

    assert dneio_runner.run(main) == "ok"


@HOSTS
def test_racing_resumes_deliver_exactly_once(dneio_runner: Harness) -> None:
    """Two threads race to resume the same continuation: one wins, one is told."""

    async def main(h: Harness) -> Any:
        parked: list[Any] = []
        got: list[Any] = []

        async def waiter() -> None:
            got.append(await shift(parked.append))

        h.spawn(waiter)
        await h.settle()
        outcomes: list[str] = []
        barrier = threading.Barrier(2)

        def racer(name: str) -> None:
            barrier.wait()
            try:
                parked[0].send(name)
                outcomes.append("sent")
            except RuntimeError:
                outcomes.append("refused")

        threads = [threading.Thread(target=racer, args=(n,)) for n in ("x", "y")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for _ in range(100):
            await h.settle()
            if got:
                break
            await _sleep_a_little(h)
        assert sorted(outcomes) == ["refused", "sent"]
        assert len(got) == 1 and got[0] in ("x", "y")
        return "ok"

    assert dneio_runner.run(main) == "ok"


async def _sleep_a_little(h: Harness) -> None:
    if h.base == "trio":
        import trio

        await trio.sleep(0.001)
    elif h.base == "twisted":
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        await deferLater(reactor, 0.001, lambda: None)  # type: ignore[arg-type]
    else:
        import asyncio

        await asyncio.sleep(0.001)

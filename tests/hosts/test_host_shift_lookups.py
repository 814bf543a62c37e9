"""A host shift finds the running asyncio loop once.

On CPython 3.11 each ``asyncio._get_running_loop()`` is a ``getpid()``
system call, so the shift of an asyncio task looks the loop up once, not
once to find which host runs the task and again to serve the shift.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from dneio import shift
from dneio._hosts._asyncio import _runner as asyncio_runner
from dneio.testing import Harness

ASYNCIO_HOSTS = ("asyncio", "asyncio-pytask", "uvloop", "anyio-asyncio", "asyncio-deferred")


@pytest.mark.dneio_runners(*ASYNCIO_HOSTS)
@pytest.mark.parametrize("twisted_loaded", [False, True])
def test_one_running_loop_lookup_per_shift(
    dneio_runner: Harness, monkeypatch: pytest.MonkeyPatch, twisted_loaded: bool
) -> None:
    if twisted_loaded:
        # A nesting host is then asked too, from the stack: still one look-up.
        pytest.importorskip("twisted.internet.defer")
    else:
        monkeypatch.delitem(sys.modules, "twisted.internet.defer", raising=False)
    real = asyncio_runner._get_running_loop
    calls = [0]

    def counting() -> Any:
        calls[0] += 1
        return real()

    monkeypatch.setattr(asyncio_runner, "_get_running_loop", counting)
    # The compiled asyncio shift keeps its own reference: hand it the counter too.
    asyncio_runner._setup_compiled()
    seen: list[int] = []
    parked: list[Any] = []

    def at_func(resume_now: bool) -> Any:
        def func(k: Any) -> None:
            # Every look-up the shift makes happens before it calls func.
            seen.append(calls[0])
            if resume_now:
                k.send(None)
            else:
                parked.append(k)

        return func

    async def main(h: Harness) -> None:
        # The first shift of a run starts dneio's hosting, which looks too.
        await shift(lambda k: k.send(None))
        for resume_now in (True, False) * 3:
            calls[0] = 0
            if resume_now:
                await shift(at_func(True))
            else:
                h.spawn(lambda: shift(at_func(False)))
                await h.settle()
                parked.pop().send(None)
                await h.settle()

    try:
        dneio_runner.run(main)
    finally:
        monkeypatch.undo()
        asyncio_runner._setup_compiled()
    assert seen == [1] * 6


@pytest.mark.dneio_runners(*ASYNCIO_HOSTS)
def test_each_shift_is_served_for_the_task_that_makes_it(dneio_runner: Harness) -> None:
    # The compiled shift remembers the last current task it found while
    # asyncio's dict of current tasks is unchanged (CPython 3.11).  Tasks on
    # the harness's loop and on loops of other threads shift at once, park,
    # and step in between, and each continuation must name its own task.
    import asyncio
    import threading

    wrong: list[tuple[str, str]] = []
    served = [0]

    async def worker(name: str, rounds: int) -> None:
        me = asyncio.current_task()
        assert me is not None
        me.set_name(name)
        parked: list[Any] = []

        def check(k: Any) -> None:
            if name not in repr(k):
                wrong.append((name, repr(k)))
            served[0] += 1

        def now(k: Any) -> None:
            check(k)
            k.send(1)

        def later(k: Any) -> None:
            check(k)
            parked.append(k)
            asyncio.get_running_loop().call_soon(lambda: parked.pop().send(1))

        for i in range(rounds):
            for _ in range(i % 4):
                await shift(now)
            if i % 3 == 0:
                await asyncio.sleep(0)
            elif i % 3 == 1:
                await shift(later)

    async def many(prefix: str, tasks: int, rounds: int) -> None:
        await asyncio.gather(*(worker(f"{prefix}{j}", rounds) for j in range(tasks)))

    def other_thread(prefix: str) -> None:
        asyncio.run(many(prefix, 5, 200))

    async def main(h: Harness) -> None:
        threads = [threading.Thread(target=other_thread, args=(p,)) for p in ("x", "y")]
        for t in threads:
            t.start()
        try:
            for _ in range(3):
                await many("main", 5, 200)
        finally:
            for t in threads:
                t.join()

    dneio_runner.run(main)
    assert wrong == []
    # Per worker: i % 4 shifts served at once and one parked every third round.
    per_worker = sum(i % 4 for i in range(200)) + len(range(1, 200, 3))
    assert served[0] == (3 * 5 + 2 * 5) * per_worker

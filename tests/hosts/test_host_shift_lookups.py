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

"""Deep chains of synchronous resumption do not overflow the stack (SPEC section 4)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from dneio import reset, shift
from dneio.testing import Harness

CHAIN = 100_000


def _chain_of_native_coroutines(n: int) -> list[int]:
    """n coroutines, each parked; resuming the first makes each resume the next."""
    order: list[int] = []
    ks: list[Any] = [None] * n

    async def link(i: int) -> None:
        await shift(lambda k: ks.__setitem__(i, k))
        order.append(i)
        if i + 1 < n:
            ks[i + 1].send(None)
        order.append(-1)

    for i in range(n):
        reset(link(i))
    ks[0].send(None)
    return order


def test_native_chain_of_100k() -> None:
    limit = sys.getrecursionlimit()
    order = _chain_of_native_coroutines(CHAIN)
    assert [i for i in order if i >= 0] == list(range(CHAIN))
    assert len(order) == 2 * CHAIN
    assert sys.getrecursionlimit() == limit


def test_native_chain_inside_host_tasks(dneio_runner: Harness) -> None:
    """The same native chain, started from a task of each runner."""

    async def main(h: Harness) -> list[int]:
        return _chain_of_native_coroutines(CHAIN)

    order = dneio_runner.run(main)
    assert [i for i in order if i >= 0] == list(range(CHAIN))


@pytest.mark.dneio_runners(
    "trio",
    "asyncio",
    "asyncio-pytask",
    "uvloop",
    "anyio-asyncio",
    "anyio-trio",
    "twisted",
    "twisted-asyncio",
)
def test_chain_of_host_tasks(dneio_runner: Harness) -> None:
    """Host tasks, each resuming the next from its own code, far past the nesting limit."""
    # 100,000 tasks on plain trio, asyncio and Twisted; the other flavours share their
    # code paths.
    n = CHAIN if dneio_runner.name in ("trio", "asyncio", "twisted") else 3_000

    async def main(h: Harness) -> list[int]:
        order: list[int] = []
        ks: list[Any] = [None] * n

        async def link(i: int) -> None:
            await shift(lambda k: ks.__setitem__(i, k))
            order.append(i)
            if i + 1 < n:
                ks[i + 1].send(None)

        for i in range(n):
            h.spawn(link, i)
        await h.settle()
        assert all(k is not None for k in ks)
        ks[0].send(None)
        await h.settle()
        return order

    assert dneio_runner.run(main) == list(range(n))


def test_trampolined_exception_reaches_the_outermost_resumer() -> None:
    n = 200
    ks: list[Any] = [None] * n
    ran: list[int] = []

    async def link(i: int) -> None:
        await shift(lambda k: ks.__setitem__(i, k))
        ran.append(i)
        if i == n - 1:
            raise ValueError("end of chain")
        ks[i + 1].send(None)

    for i in range(n):
        reset(link(i))
    with pytest.raises(ValueError, match="end of chain"):
        ks[0].send(None)
    assert ran == list(range(n))

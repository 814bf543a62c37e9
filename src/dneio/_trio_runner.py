"""The trio runner: ``shift`` inside a trio task."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import outcome
import trio
import trio.lowlevel as tl

from . import _trio_internals
from ._adoption import adopted
from ._host_continuation import (
    CANCELLED,
    EARLY,
    PARKED,
    PENDING,
    SPENT,
    HostContinuation,
    Slot,
)
from ._runner import HostRunner
from ._scheduling import ThreadState, current_state

# What a synchronous step sends into the parked task; the outcome itself is
# on the slot, so no Outcome object is built per synchronous resumption.
_WOKEN = object()


class TrioSlot(Slot):
    __slots__ = ("task", "token")

    def __init__(self, home: ThreadState, task: tl.Task, token: tl.TrioToken) -> None:
        super().__init__(home)
        self.task = task
        self.token = token

    def abort(self, raise_cancel: Any) -> tl.Abort:
        if self.try_cancel():
            return tl.Abort.SUCCEEDED
        return tl.Abort.FAILED

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self.token.run_sync_soon(fn)

    call_soon = call_soon_threadsafe

    def _wake(self, st: ThreadState) -> None:
        if RUNNER.synchronous:
            _trio_internals.step(self.task, _WOKEN)
        else:
            _fifo_for(self.token).wake(self.task)


class TrioContinuation(HostContinuation):
    __slots__ = ()

    def __repr__(self) -> str:
        s = self._s
        assert isinstance(s, TrioSlot)
        return f"<trio continuation of task {s.task.name!r}>"


class _Fifo:
    """Deferred mode: wake parked tasks one at a time, in resumption order.

    trio runs each batch of woken tasks in a random order, so waking several
    at once would lose their order.  Instead each woken task, once it runs,
    wakes the next one, which runs in a later batch: after it.
    """

    __slots__ = ("in_flight", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[tl.Task] = deque()
        self.in_flight = False

    def wake(self, task: tl.Task) -> None:
        if self.in_flight:
            self.waiting.append(task)
        else:
            self.in_flight = True
            tl.reschedule(task, outcome.Value(_WOKEN))

    def started(self, token: tl.TrioToken) -> None:
        if self.waiting:
            tl.reschedule(self.waiting.popleft(), outcome.Value(_WOKEN))
        else:
            self.in_flight = False
            _fifos.pop(token, None)


# One queue per trio run with a wake-up in flight; idle runs have none.
_fifos: dict[tl.TrioToken, _Fifo] = {}


def _fifo_for(token: tl.TrioToken) -> _Fifo:
    fifo = _fifos.get(token)
    if fifo is None:
        fifo = _fifos[token] = _Fifo()
    return fifo


class TrioRunner(HostRunner):
    name = "trio"

    def __init__(self) -> None:
        self.internals_ok = _trio_internals.check()
        self.synchronous = self.internals_ok and os.environ.get("DNEIO_TRIO_MODE") != "deferred"

    def mode(self) -> str:
        return "synchronous" if self.synchronous else "deferred"

    def set_mode(self, mode: str) -> None:
        """Force ``"deferred"``, or return to ``"synchronous"`` where the internals allow."""
        if mode == "synchronous":
            if not self.internals_ok:
                raise RuntimeError(
                    f"trio {trio.__version__} does not look the way dneio expects "
                    f"({_trio_internals.problem}); only the deferred mode is available"
                )
            self.synchronous = True
        elif mode == "deferred":
            self.synchronous = False
        else:
            raise ValueError(f"mode must be 'synchronous' or 'deferred', not {mode!r}")

    def in_task(self) -> bool:
        try:
            tl.current_task()
        except RuntimeError:
            return False
        return True

    def is_running(self) -> bool:
        try:
            tl.current_trio_token()
        except RuntimeError:
            return False
        return True

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
        slot = TrioSlot(current_state(), tl.current_task(), tl.current_trio_token())
        k = TrioContinuation(slot)
        try:
            func(k)
        except BaseException:
            if slot.state == PENDING:
                slot.state = SPENT
            raise
        del k
        if slot.state == EARLY:
            return slot.outcome()
        slot.raise_if_dropped()
        slot.state = PARKED
        if self.synchronous:
            sent = yield _trio_internals.WaitTaskRescheduled(slot.abort)
            if sent is not _WOKEN:
                # trio itself woke the task: a cancellation (or KeyboardInterrupt).
                return sent.unwrap()
        else:
            try:
                yield from tl.wait_task_rescheduled(slot.abort).__await__()
            finally:
                if slot.state != CANCELLED:
                    _fifo_for(slot.token).started(slot.token)
        return slot.outcome()

    def adopt(self, coro: Any, first_yield: Any) -> None:
        moved = _trio_internals.detach_scopes(coro) if self.internals_ok else None
        name = getattr(coro, "__qualname__", type(coro).__name__)
        tl.spawn_system_task(_adopted, coro, first_yield, moved, name=f"dneio-adopted:{name}")


async def _adopted(coro: Any, first_yield: Any, moved: Any) -> Any:
    if moved is not None:
        _trio_internals.attach_scopes(moved)
    return await adopted(coro, first_yield)


RUNNER = TrioRunner()
_ = PARKED

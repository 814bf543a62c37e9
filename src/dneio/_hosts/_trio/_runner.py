"""The trio runner: ``shift`` inside a trio task."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import outcome
import trio
import trio.lowlevel as tl

from ..._core import _driver
from ..._core._adoption import adopted, carry_on
from ..._core._queue import ThreadState, current_state, local
from .._base import HostRunner
from .._parking import (
    CANCELLED,
    PENDING,
    RESUMED,
    HostContinuation,
    Slot,
)
from . import _internals as _trio_internals

# What a synchronous step sends into the parked task; the outcome itself is
# on the slot, so no Outcome object is built per synchronous resumption.
_WOKEN = object()


class TrioSlot(Slot):
    __slots__ = ("task", "token")

    def __init__(self, home: ThreadState, task: tl.Task, token: tl.TrioToken) -> None:
        # Slot.__init__, inlined: this runs for every shift.
        self.state = PENDING
        self.home = home
        self.value = None
        self.is_exc = False
        self.shielded = False
        self.k_ref = None
        self.task = task
        self.token = token

    def line_up_deferred(self) -> bool:
        fifo = _fifos.get(self.token)
        if fifo is None or not fifo.in_flight:
            return False
        self.state = RESUMED
        fifo.waiting.append(self.task)
        return True

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
        self._start_mode(_trio_internals.check(), _trio_internals.problem)
        self.hosting = TrioEntryHook()

    def in_task(self) -> bool:
        if self.internals_ok:
            return _trio_internals.current_task_or_none() is not None
        try:
            tl.current_task()
        except RuntimeError:
            return False
        return True

    def _current(self) -> tuple[tl.Task, tl.TrioToken]:
        if self.internals_ok:
            task = _trio_internals.current_task_or_none()
            token = task._runner.trio_token
            if token is not None:
                return task, token
        return tl.current_task(), tl.current_trio_token()

    def is_running(self) -> bool:
        try:
            tl.current_trio_token()
        except RuntimeError:
            return False
        return True

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
        if _driver.entry_hook() is None:
            self.hosting.start_if_running()
        task, token = self._current()
        slot = TrioSlot(local.state, task, token)
        if not slot.must_wait(func, TrioContinuation, self.synchronous):
            return slot.outcome()
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
        if self.hosting.adopt(coro, first_yield):
            return
        name = getattr(coro, "__qualname__", type(coro).__name__)
        tl.spawn_system_task(adopted, coro, first_yield, name=f"dneio-adopted:{name}")


class _Host:
    """A parked system task that stands in as trio's current task for native code."""

    __slots__ = ("coro", "runner", "task", "used")

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.task: Any = None
        self.coro: Any = None
        self.used = False

    def idle_abort(self, raise_cancel: Any) -> tl.Abort:
        # Cancelled while idle (the run is ending): go away.
        self.used = True
        return tl.Abort.SUCCEEDED


async def _host_main(host: _Host) -> Any:
    return await _HostLoop(host)


class _HostLoop:
    __slots__ = ("host",)

    def __init__(self, host: _Host) -> None:
        self.host = host

    def __await__(self) -> Generator[Any, Any, Any]:
        host = self.host
        sent = yield _trio_internals.WaitTaskRescheduled(host.idle_abort)
        coro, host.coro = host.coro, None
        if coro is None:
            return sent.unwrap()
        # Adopted: the coroutine suspended in a trio operation that registered
        # this task; what trio sends is for it.
        return (yield from carry_on(coro, coro.send, sent))


class TrioEntryHook:
    """Makes native code inside a trio run register a host task of dneio's with trio.

    Active only while at least one trio run is (its instrument turns it off
    at the end of the run), and only where trio's internals passed the check.
    """

    def __init__(self) -> None:
        self.runs: set[int] = set()

    def start_if_running(self) -> None:
        if not RUNNER.internals_ok:
            return
        runner = _trio_internals.current_runner_or_none()
        if runner is None or id(runner) in self.runs:
            return
        self.runs.add(id(runner))
        tl.add_instrument(_EndOfRun(self, id(runner)))
        _driver.set_entry_hook(self)

    def stop(self, run_id: int) -> None:
        self.runs.discard(run_id)
        if not self.runs:
            _driver.set_entry_hook(None)
        current_state().entry_host = None

    def enter(self, st: ThreadState) -> Any:
        task = _trio_internals.current_task_or_none()
        if task is None:
            return None
        host = st.entry_host
        if host is None or host.used or host.runner is not task._runner:
            if id(task._runner) not in self.runs:
                # Another thread's run started the hosting: follow this run too.
                self.start_if_running()
            host = self._new_host(st, task._runner)
            if host is None:
                return None
        _trio_internals.make_current(host.task)
        return task

    def leave(self, task: Any) -> None:
        _trio_internals.make_current(task)

    def _new_host(self, st: ThreadState, runner: Any) -> _Host | None:
        host = _Host(runner)
        try:
            host.task = tl.spawn_system_task(_host_main, host, name="dneio native host")
            _trio_internals.start_now(host.task)
        except Exception:  # the system nursery is closed: the run is ending
            return None
        st.entry_host = host
        return host

    def adopt(self, coro: Any, trap: Any) -> bool:
        """Let the current host task carry on ``coro``, suspended in ``trap``."""
        st = current_state()
        host = st.entry_host
        if host is None or host.used or _trio_internals.current_task_or_none() is not host.task:
            return False
        host.coro = coro
        if not _trio_internals.park_on(host.task, trap):
            host.coro = None
            return False
        host.used = True
        # The native code that is still running (whatever resumed ``coro``)
        # must not go on registering the host that is now coro's: give it a
        # fresh one.
        fresh = self._new_host(st, host.runner)
        if fresh is not None:
            _trio_internals.make_current(fresh.task)
        return True


class _EndOfRun(trio.abc.Instrument):
    def __init__(self, hosting: TrioEntryHook, run_id: int) -> None:
        self.hosting = hosting
        self.run_id = run_id

    def after_run(self) -> None:
        self.hosting.stop(self.run_id)


RUNNER = TrioRunner()


def start_hosting() -> None:
    """If a trio run is active on this thread, make sure native code entered from it is hosted."""
    RUNNER.hosting.start_if_running()

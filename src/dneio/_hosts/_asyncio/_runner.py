"""The asyncio runner: ``shift`` inside an asyncio task (default loop, uvloop, anyio)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Generator
from contextvars import Context
from typing import Any

from ..._core._adoption import adopted
from ..._core._queue import ThreadState, local
from .._base import HostRunner
from .._parking import (
    CANCELLED,
    PARKED,
    PENDING,
    RESUMED,
    HostContinuation,
    Slot,
)
from . import _internals as _asyncio_internals

_get_running_loop = asyncio._get_running_loop

# How anyio's cancel scopes word the cancellations they deliver (4.0, and later).
_ANYIO_CANCEL = ("Cancelled by cancel scope ", "Cancelled via cancel scope ")

# Per loop: tasks woken with call_soon (deferred mode) that have not run yet.
_deferred_wakes: dict[asyncio.AbstractEventLoop, int] = {}


class AsyncioSlot(Slot):
    """The future-like object a task parked in ``shift`` waits on.

    asyncio tasks accept any object that follows the future protocol.  This
    one keeps the task's wake-up callback instead of scheduling it, so dneio
    decides when (and how synchronously) the task runs.
    """

    __slots__ = (
        "_asyncio_future_blocking",
        "cancel_msg",
        "cancel_pending",
        "deferred",
        "done_callbacks",
        "loop",
        "queued",
        "task",
    )

    def __init__(self, home: ThreadState, loop: asyncio.AbstractEventLoop, task: Any) -> None:
        # Slot.__init__, inlined: this runs for every shift.
        self.state = PENDING
        self.home = home
        self.value = None
        self.is_exc = False
        self.shielded = False
        self.k_ref = None
        self.loop = loop
        self.task = task
        self._asyncio_future_blocking = False
        self.done_callbacks: list[tuple[Callable[[Any], object], Context]] = []
        self.cancel_msg: Any = None
        self.cancel_pending = False
        # Woken with call_soon and not yet running (counted in _deferred_wakes).
        self.deferred = False
        # Claimed, but waiting in the thread's resumption queue for its turn.
        self.queued = False

    # -- the future protocol, as asyncio.Task uses it ------------------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: Context | None = None
    ) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self.done():
            self.loop.call_soon(fn, self, context=context)
        else:
            self.done_callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        before = len(self.done_callbacks)
        self.done_callbacks = [(f, c) for f, c in self.done_callbacks if f != fn]
        return before - len(self.done_callbacks)

    def done(self) -> bool:
        return self.state >= RESUMED and not self.queued

    def cancelled(self) -> bool:
        return self.state == CANCELLED

    def cancel(self, msg: Any = None) -> bool:
        if self.try_cancel():
            self.cancel_msg = msg
            self.schedule_callbacks()
            return True
        if self.state in (PARKED, RESUMED):
            # Shielded, or resumed but not yet run: the task gets its value
            # and the cancellation afterwards (see AsyncioRunner.shift).
            # Saying yes keeps asyncio from throwing it in at the wake-up.
            self.cancel_pending = True
            self.cancel_msg = msg
            return True
        return False

    def result(self) -> None:
        if self.state == CANCELLED:
            raise asyncio.CancelledError(self.cancel_msg)

    def exception(self) -> None:
        self.result()

    def schedule_callbacks(self) -> None:
        callbacks, self.done_callbacks = self.done_callbacks, []
        for fn, context in callbacks:
            self.loop.call_soon(fn, self, context=context)

    # -- dneio -----------------------------------------------------------------
    def line_up_deferred(self) -> bool:
        if not _deferred_wakes.get(self.loop):
            return False
        # A done park makes the task schedule itself with call_soon: after
        # the tasks woken earlier.
        self.state = RESUMED
        self.deferred = True
        _deferred_wakes[self.loop] += 1
        return True

    def queue_behind(self, st: ThreadState) -> None:
        self.queued = True
        st.queue.append((self, False, None))

    def report(self, exc: Exception, what: str) -> None:
        self.loop.call_exception_handler(
            {"message": f"dneio: {what}", "exception": exc, "task": self.task}
        )

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def call_soon(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon(fn)

    def _wake(self, st: ThreadState) -> None:
        self.queued = False
        callbacks = self.done_callbacks
        if RUNNER.synchronous and len(callbacks) == 1:
            ((wakeup, context),) = callbacks
            self.done_callbacks = []
            _asyncio_internals.step(self.loop, wakeup, context, self)
        else:
            if not self.deferred:
                self.deferred = True
                _deferred_wakes[self.loop] = _deferred_wakes.get(self.loop, 0) + 1
            self.schedule_callbacks()


class AsyncioContinuation(HostContinuation):
    __slots__ = ()

    def __repr__(self) -> str:
        s = self._s
        assert isinstance(s, AsyncioSlot)
        name = s.task.get_name() if s.task is not None else "?"
        return f"<asyncio continuation of task {name!r}>"


class AsyncioRunner(HostRunner):
    name = "asyncio"

    def __init__(self) -> None:
        self._start_mode(_asyncio_internals.check(), _asyncio_internals.problem)
        self.current_task = (
            _asyncio_internals.current_task_getter() if self.internals_ok else asyncio.current_task
        )

    def in_task(self) -> bool:
        loop = _get_running_loop()
        return loop is not None and self.current_task(loop) is not None

    def is_running(self) -> bool:
        return _get_running_loop() is not None

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
        loop = _get_running_loop()
        assert loop is not None
        task = self.current_task(loop)
        park = AsyncioSlot(local.state, loop, task)
        if not park.must_wait(func, AsyncioContinuation, self.synchronous):
            return park.outcome()
        park._asyncio_future_blocking = True
        sent = None
        try:
            sent = yield park
        except asyncio.CancelledError as exc:
            if park.state != RESUMED or task is None:
                raise
            park.cancel_pending = True
            park.cancel_msg = exc.args[0] if exc.args else None
        finally:
            if park.deferred:
                left = _deferred_wakes[loop] - 1
                if left:
                    _deferred_wakes[loop] = left
                else:
                    del _deferred_wakes[loop]
        if sent is park:
            # Handed straight back: not an asyncio task's step (which sends
            # None) but a coroutine driver that ignores what it does not know.
            _not_an_asyncio_task(park)
        if park.state == CANCELLED:
            park.result()
        if park.cancel_pending and task is not None:
            _redeliver_cancel(task, park.cancel_msg)
        return park.outcome()

    def adopt(self, coro: Any, first_yield: Any) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(adopted(coro, first_yield))
        _adopted_tasks.add(task)
        task.add_done_callback(_adopted_done)


def _not_an_asyncio_task(park: AsyncioSlot) -> None:
    """Give up a wait that no asyncio task is parked in, losing nothing."""
    park.try_cancel()  # the holder of k learns of it through on_cancel
    raise RuntimeError(
        "dneio took this coroutine for an asyncio task's, but whatever steps it handed the "
        "wait straight back: it is most likely a Twisted coroutine (Deferred.fromCoroutine) "
        "started inside an asyncio task, which dneio cannot tell apart because Twisted's "
        f"internals did not pass its check ({_twisted_problem()}). Start Twisted coroutines "
        "from Twisted code (reactor.callLater, a Deferred callback) instead."
    )


def _twisted_problem() -> str:
    from ..._core._registry import get_runner

    return get_runner("twisted").problem or "no problem recorded"


def _redeliver_cancel(task: Any, msg: Any) -> None:
    """A cancellation arrived after the value: deliver it at the task's next wait.

    It is delivered from the loop, once the task has reached that wait, and
    only if the request is still standing: a scope that requested it
    (``asyncio.timeout``) and was left meanwhile has withdrawn it with
    ``uncancel``, and a task that has finished keeps its result.  anyio
    cancel scopes need none of this: they cancel again, at the next wait,
    for as long as the scope stays cancelled (and not after it).
    """
    if isinstance(msg, str) and msg.startswith(_ANYIO_CANCEL):
        return
    task.get_loop().call_soon(_late_cancel, task, msg)


def _late_cancel(task: Any, msg: Any) -> None:
    if not task.done() and task.cancelling():
        # The request is counted already: cancel again without counting it twice.
        task.cancel(msg)
        task.uncancel()


# asyncio keeps only weak references to tasks.
_adopted_tasks: set[asyncio.Task[Any]] = set()


def _adopted_done(task: asyncio.Task[Any]) -> None:
    _adopted_tasks.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        task.get_loop().call_exception_handler(
            {
                "message": "a coroutine run by dneio.reset and adopted as an asyncio task "
                "raised an exception that nobody received",
                "exception": exc,
                "task": task,
            }
        )


RUNNER = AsyncioRunner()

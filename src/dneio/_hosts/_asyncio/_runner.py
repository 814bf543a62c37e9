"""The asyncio runner: ``shift`` inside an asyncio task (default loop, uvloop, anyio)."""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
from collections.abc import Callable, Generator
from contextvars import Context
from typing import TYPE_CHECKING, Any, cast

from ..._core._adoption import adopted, carry_on
from ..._core._impl import compiled, own_methods
from ..._core._queue import ThreadState, current_state
from .._base import HostRunner
from .._entry import HOSTING, Hosting, HostRecords
from .._parking import (
    CANCELLED,
    PARKED,
    PENDING,
    RESUMED,
    HostContinuation,
    Slot,
)
from . import _internals as _asyncio_internals

_asyncio_c: Any = None
if compiled is not None:
    try:
        from . import _asyncio_c
    except ImportError:  # not built: the pure-Python slot serves
        _asyncio_c = None

_get_running_loop = asyncio._get_running_loop
_enter_task: Any = _asyncio_internals._enter_task
_leave_task: Any = _asyncio_internals._leave_task

# How anyio's cancel scopes word the cancellations they deliver (4.0, and later).
_ANYIO_CANCEL = ("Cancelled by cancel scope ", "Cancelled via cancel scope ")

# Per loop: tasks woken with call_soon (deferred mode) that have not run yet.
_deferred_wakes: dict[asyncio.AbstractEventLoop, int] = {}


class PyAsyncioSlotCore(Slot):
    """The hot part of :class:`AsyncioSlot`: its fields and what a task step calls.

    The compiled twin is ``_asyncio_c.AsyncioSlotCore``, which also serves as
    the iterator of the task's ``shift`` (instead of :meth:`AsyncioRunner._wait`);
    both hand every unusual case to the ``*_slow`` methods of :class:`AsyncioSlot`.
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

    # Provided by AsyncioSlot; named here for the type checker.
    def _result_slow(self) -> None:
        raise NotImplementedError

    def _check_resumable_slow(self, k: object, here: bool) -> None:
        raise NotImplementedError

    def _wake_slow(self, st: ThreadState) -> None:
        raise NotImplementedError

    # -- the future protocol, as asyncio.Task uses it ------------------------
    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: Context | None = None
    ) -> None:
        if context is None:
            context = contextvars.copy_context()
        if self.state >= RESUMED and not self.queued:  # self.done()
            self.loop.call_soon(fn, self, context=context)
        else:
            self.done_callbacks.append((fn, context))

    def done(self) -> bool:
        return self.state >= RESUMED and not self.queued

    def cancelled(self) -> bool:
        return self.state == CANCELLED

    def result(self) -> None:
        if self.state == CANCELLED:
            self._result_slow()

    def exception(self) -> None:
        self.result()

    # -- dneio -----------------------------------------------------------------
    def check_resumable(self, k: object, here: bool) -> None:
        if here and _get_running_loop() is self.loop:
            return  # running here, so not closed either
        self._check_resumable_slow(k, here)

    def _wake(self, st: ThreadState) -> None:
        self._wake_slow(st)


if TYPE_CHECKING:
    _SlotBase = PyAsyncioSlotCore
elif _asyncio_c is None:
    _SlotBase = PyAsyncioSlotCore
else:

    class _SlotBase(_asyncio_c.AsyncioSlotCore, Slot):
        __slots__ = ()


class AsyncioSlot(_SlotBase):
    """The future-like object a task parked in ``shift`` waits on.

    asyncio tasks accept any object that follows the future protocol.  This
    one keeps the task's wake-up callback instead of scheduling it, so dneio
    decides when (and how synchronously) the task runs.
    """

    __slots__ = ()

    # -- the future protocol, as asyncio.Task uses it ------------------------
    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        before = len(self.done_callbacks)
        self.done_callbacks = [(f, c) for f, c in self.done_callbacks if f != fn]
        return before - len(self.done_callbacks)

    def cancel(self, msg: Any = None) -> bool:
        if self.cancel_stop() is not None:
            # Cancelled already, and the task is to raise a callback's
            # KeyboardInterrupt or SystemExit: a second cancel() must not
            # make asyncio throw its CancelledError in instead.
            return True
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

    def _result_slow(self) -> None:
        stop = self.cancel_stop()
        if stop is not None:
            raise stop  # an on_cancel callback's KeyboardInterrupt or SystemExit
        raise asyncio.CancelledError(self.cancel_msg)

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

    def report(self, exc: BaseException, what: str) -> None:
        self.loop.call_exception_handler(
            {"message": f"dneio: {what}", "exception": exc, "task": self.task}
        )

    def _check_resumable_slow(self, k: object, here: bool) -> None:
        loop = self.loop
        if loop.is_closed():
            raise RuntimeError(
                f"cannot resume {k!r}: its event loop is closed, and the task with it"
            )
        if here and _get_running_loop() is not loop:
            raise RuntimeError(
                f"cannot resume {k!r} here: its event loop is not running on this thread "
                "(it is stopped, or another loop runs here); resume it from code running "
                "in its loop, or schedule the resumption with loop.call_soon(k.send, value) "
                "to have it run when the loop runs again"
            )

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def call_soon(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon(fn)

    def _wake_slow(self, st: ThreadState) -> None:
        self.queued = False
        callbacks = self.done_callbacks
        if RUNNER.synchronous and len(callbacks) == 1:
            ((wakeup, context),) = callbacks
            self.done_callbacks = []
            _asyncio_internals.step(self.loop, wakeup, context, self, RUNNER.current_task)
        else:
            if not self.deferred:
                self.deferred = True
                _deferred_wakes[self.loop] = _deferred_wakes.get(self.loop, 0) + 1
            self.schedule_callbacks()

    # -- the end of a wait, when the compiled slot is the shift's iterator -----------
    def _finish_slow(self, sent: Any) -> Any:
        """What follows the wait (see ``AsyncioRunner._wait``), after an unusual one."""
        if self.deferred:
            _uncount_deferred(self.loop)
        if sent is self:
            # Handed straight back: not an asyncio task's step (which sends
            # None) but a coroutine driver that ignores what it does not know.
            _not_an_asyncio_task(self)
        if self.state == CANCELLED:
            self._result_slow()
        if self.cancel_pending and self.task is not None:
            _redeliver_cancel(self.task, self.cancel_msg)
        return self.outcome()

    def _throw_slow(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        """An exception thrown into the wait (see ``AsyncioRunner._wait``)."""
        if isinstance(typ, BaseException):
            exc = typ
        elif val is None:
            exc = typ()
        elif isinstance(val, BaseException):
            exc = val
        else:
            exc = typ(val)
        if tb is not None:
            exc = exc.with_traceback(tb)
        if (
            not isinstance(exc, asyncio.CancelledError)
            or self.state != RESUMED
            or self.task is None
        ):
            if self.deferred:
                _uncount_deferred(self.loop)
            raise exc
        self.cancel_pending = True
        self.cancel_msg = exc.args[0] if exc.args else None
        return self._finish_slow(None)

    def _close_slow(self) -> None:
        """The task's coroutine was closed while it waited here."""
        if self.deferred:
            _uncount_deferred(self.loop)


def _uncount_deferred(loop: asyncio.AbstractEventLoop) -> None:
    left = _deferred_wakes[loop] - 1
    if left:
        _deferred_wakes[loop] = left
    else:
        del _deferred_wakes[loop]


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
        self.hosting = AsyncioHosting(self)

    def in_task(self) -> bool:
        loop = _get_running_loop()
        return loop is not None and self.current_task(loop) is not None

    def is_running(self) -> bool:
        return _get_running_loop() is not None

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any] | tuple[Any]:
        loop = _get_running_loop()
        assert loop is not None
        return self._shift(func, loop, self.current_task(loop))

    def shift_if_in_task(
        self, func: Callable[[Any], Any]
    ) -> Generator[Any, Any, Any] | tuple[Any] | None:
        # The running loop is looked up once per shift, not twice.
        loop = _get_running_loop()
        if loop is None:
            return None
        task = self.current_task(loop)
        if task is None:
            return None
        return self._shift(func, loop, task)

    if _asyncio_c is not None:
        # The compiled shift: the same steps, with the slot as the iterator.
        shift_if_in_task = staticmethod(_asyncio_c.shift_if_in_task)

    def task_here(self) -> tuple[asyncio.AbstractEventLoop, Any] | None:
        loop = _get_running_loop()
        if loop is None:
            return None
        task = self.current_task(loop)
        return None if task is None else (loop, task)

    def shift_for(
        self, func: Callable[[Any], Any], found: object
    ) -> Generator[Any, Any, Any] | tuple[Any]:
        loop, task = cast(tuple[asyncio.AbstractEventLoop, Any], found)
        return self._shift(func, loop, task)

    def _shift(
        self, func: Callable[[Any], Any], loop: asyncio.AbstractEventLoop, task: Any
    ) -> Generator[Any, Any, Any] | tuple[Any]:
        if _asyncio_c is not None:
            result: Generator[Any, Any, Any] | tuple[Any] = _asyncio_c.shift_in(func, loop, task)
            return result
        if HOSTING.asyncio is None:
            self.hosting.start_if_running(loop)
        park = AsyncioSlot(current_state(), loop, task)
        if not park.must_wait(func, AsyncioContinuation, self.synchronous):
            return (park.outcome(),)
        return self._wait(park, loop, task)

    def _wait(
        self, park: AsyncioSlot, loop: asyncio.AbstractEventLoop, task: Any
    ) -> Generator[Any, Any, Any]:
        """The task's wait in a ``shift`` it must suspend in."""
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
                _uncount_deferred(loop)
        if sent is park:
            # Handed straight back: not an asyncio task's step (which sends
            # None) but a coroutine driver that ignores what it does not know.
            _not_an_asyncio_task(park)
        if park.state == CANCELLED:
            park.result()
        if park.cancel_pending and task is not None:
            _redeliver_cancel(task, park.cancel_msg)
        return park.outcome()

    def adopt(self, coro: Any, first_yield: Any, context: Context) -> None:
        if self.hosting.adopt(coro, first_yield, context):
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(adopted(coro, first_yield, context))
        _adopted_tasks.add(task)
        task.add_done_callback(_adopted_done)


def _not_an_asyncio_task(park: AsyncioSlot) -> None:
    """Give up a wait that no asyncio task is parked in, losing nothing."""
    park.try_cancel()  # the holder of k learns of it through on_cancel
    error = RuntimeError(
        "dneio took this coroutine for an asyncio task's, but whatever steps it handed the "
        "wait straight back: it is most likely a Twisted coroutine (Deferred.fromCoroutine) "
        "started inside an asyncio task, which dneio cannot tell apart because Twisted's "
        f"internals did not pass its check ({_twisted_problem()}). Start Twisted coroutines "
        "from Twisted code (reactor.callLater, a Deferred callback) instead."
    )
    stop = park.cancel_stop()
    if stop is not None:
        raise stop from error  # a callback's KeyboardInterrupt or SystemExit goes first
    raise error


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


# -- hosting native code (see _hosting) -------------------------------------------------

#: Idle hosts kept per loop for the next native coroutines.
_FREE_HOSTS = 8


class _Host:
    """An asyncio task that stands in as the current task for one native coroutine.

    While idle it waits on an :class:`_IdlePark`, out of ``asyncio.all_tasks()``
    (so that ``asyncio.run`` does not wait for it).  A cancellation it gets
    while idle (a timeout opened by the native coroutine expiring while the
    coroutine is suspended in a native shift, say) is kept, and delivered at
    the coroutine's next asyncio operation if still requested then.  If the
    coroutine suspends in an asyncio operation, the task carries it on from
    there: it becomes an ordinary task, running the coroutine.
    """

    __slots__ = (
        "adopted",
        "cancel_msg",
        "cancel_requested",
        "context",
        "ended",
        "first_yield",
        "loop",
        "park",
        "quit",
        "ref",
        "task",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: Any = None
        self.park: _IdlePark | None = None
        self.adopted: Any = None  # the coroutine to carry on
        self.first_yield: Any = None  # what it yielded when it was adopted
        self.context: Context | None = None  # its own context, which it goes on in
        self.cancel_requested = False
        self.cancel_msg: Any = None
        self.quit = False
        self.ended = False
        self.ref: Any = None

    def is_clean(self) -> bool:
        return (
            not self.ended
            and not self.quit
            and self.adopted is None
            and not self.cancel_requested
            and not self.task.cancelling()
        )

    def wake(self) -> None:
        park = self.park
        if park is not None:
            self.park = None
            park.wake()

    def run(self) -> Generator[Any, Any, Any]:
        """The host task's code (primed: its first yield is not seen by the task)."""
        try:
            exc: BaseException | None = None
            try:
                yield None
            except BaseException as e:  # cancelled before its first step
                exc = e
            while True:
                if exc is not None:
                    if not isinstance(exc, asyncio.CancelledError):
                        raise exc
                    self.cancel_requested = True
                    self.cancel_msg = exc.args[0] if exc.args else None
                    exc = None
                if self.adopted is not None:
                    break
                if self.quit:
                    return None
                park = self.park = _IdlePark(self)
                try:
                    yield park
                except BaseException as e:
                    exc = e
            coro, first, context = self.adopted, self.first_yield, self.context
            self.adopted = self.first_yield = self.context = None
            requested, self.cancel_requested = self.cancel_requested, False
            if requested and self.task.cancelling():
                # Cancelled while the coroutine ran natively: it gets the
                # cancellation at this, its next asyncio operation.
                msg = self.cancel_msg
                cancel = getattr(first, "cancel", None)
                if cancel is not None:
                    cancel(msg)
                return (
                    yield from carry_on(coro, coro.throw, asyncio.CancelledError(msg), context)
                )
            try:
                sent = yield first
            except BaseException as e:
                return (yield from carry_on(coro, coro.throw, e, context))
            return (yield from carry_on(coro, coro.send, sent, context))
        finally:
            self.ended = True


class _IdlePark:
    """What an idle host task waits on (the future protocol, as asyncio.Task uses it)."""

    __slots__ = ("_asyncio_future_blocking", "callbacks", "finished", "host")

    def __init__(self, host: _Host) -> None:
        self.host = host
        self._asyncio_future_blocking = True
        self.callbacks: list[tuple[Callable[[Any], object], Context | None]] = []
        self.finished = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.host.loop

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: Context | None = None
    ) -> None:
        if self.finished:
            self.host.loop.call_soon(fn, self, context=context)
        else:
            self.callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        before = len(self.callbacks)
        self.callbacks = [(f, c) for f, c in self.callbacks if f != fn]
        return before - len(self.callbacks)

    def done(self) -> bool:
        return self.finished

    def cancelled(self) -> bool:
        return False

    def cancel(self, msg: Any = None) -> bool:
        if self.finished:
            return False
        # Keep it for the coroutine's next asyncio operation (see _Host).
        self.host.cancel_requested = True
        self.host.cancel_msg = msg
        return True

    def result(self) -> None:
        return None

    def exception(self) -> None:
        return None

    def wake(self) -> None:
        self.finished = True
        callbacks, self.callbacks = self.callbacks, []
        for fn, context in callbacks:
            self.host.loop.call_soon(fn, self, context=context)


class _HostCoro(collections.abc.Coroutine):  # type: ignore[type-arg]
    """The coroutine of a host task: a primed generator, so that it can take a
    cancellation even before its first step (an ``async def`` cannot)."""

    __slots__ = ("_gen",)
    __name__ = "dneio_native_host"

    def __init__(self, host: _Host) -> None:
        self._gen: Any = host.run()
        self._gen.send(None)

    def send(self, value: Any) -> Any:
        return self._gen.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and isinstance(typ, BaseException):
            return self._gen.throw(typ)
        return self._gen.throw(typ, val, tb)

    def close(self) -> None:
        self._gen.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        gen: Generator[Any, Any, Any] = self._gen
        return gen

    @property
    def cr_frame(self) -> Any:
        return self._gen.gi_frame

    @property
    def cr_running(self) -> bool:
        return bool(self._gen.gi_running)

    @property
    def cr_suspended(self) -> bool:
        return self._gen.gi_suspended if hasattr(self._gen, "gi_suspended") else True

    @property
    def cr_code(self) -> Any:
        return self._gen.gi_code

    @property
    def cr_await(self) -> Any:
        return self._gen.gi_yieldfrom


class AsyncioHosting(HostRecords):
    """asyncio's part of the hosting (see ``_hosting``): a host task per native coroutine.

    Needs asyncio's private ``_enter_task``/``_leave_task`` (or
    ``_swap_current_task``) and ``_register_task``/``_unregister_task``,
    checked at first use.  Without them native code runs with its resumer's
    task current (see docs/guarantees.md).
    """

    __slots__ = ("current_task", "free", "loops", "ok", "runner")

    def __init__(self, runner: AsyncioRunner) -> None:
        super().__init__()
        self.runner = runner
        self.current_task = runner.current_task
        self.ok: bool | None = None  # None: not checked yet
        self.loops: dict[int, asyncio.AbstractEventLoop] = {}
        self.free: dict[int, list[_Host]] = {}

    def start_if_running(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            loop = _get_running_loop()
        if loop is None or id(loop) in self.loops or self.ok is False:
            return
        if not self.runner.internals_ok:
            self.ok = False
            return
        if self.ok is None:
            idle = _Host(loop)
            idle.quit = True  # it finishes at its first step
            probe = loop.create_task(_HostCoro(idle), name="dneio hosting check")
            self.ok = _asyncio_internals.check_hosting(probe)
            if not self.ok:
                return
        # Forget the loops closed since (asyncio.run closes its loop): else
        # every loop that ever hosted native code would stay alive here for
        # as long as the process runs.
        self._forget_loops(lambda known: known.is_closed())
        self.loops[id(loop)] = loop
        HOSTING.asyncio = self
        HOSTING.update()

    def _forget_loops(self, gone: Callable[[asyncio.AbstractEventLoop], bool]) -> None:
        """Forget the loops ``gone`` says are, with their free hosts, and the
        hosts of native coroutines still parked from a closed loop (each gets
        a host of the loop it runs in next, if it runs again)."""
        # (pop: another thread may be forgetting the same loop meanwhile.)
        for key, loop in list(self.loops.items()):
            if gone(loop):
                self.loops.pop(key, None)
                self.free.pop(key, None)
        for key, host in list(self.records.items()):
            if host.loop.is_closed():
                self._forget(key, host)

    def _prune(self) -> None:
        # Native code ran with no loop running on this thread: forget the
        # loops that stopped, and turn off when none is left.
        self._forget_loops(lambda loop: loop.is_closed() or not loop.is_running())
        if not self.loops:
            HOSTING.asyncio = None
            HOSTING.update()

    # -- entering and leaving native code ---------------------------------------------
    def enter(self, coro: Any, in_task: bool) -> Any:
        loop = _get_running_loop()
        if loop is None:
            self._prune()
            return None
        prev = self.current_task(loop)
        if in_task and prev is None:
            return None
        host = self.records.get(id(coro))
        if host is None or host.loop is not loop or host.ended:
            host = self._host_for(coro, loop)
            if host is None:
                return None
        task = host.task
        swap = _asyncio_internals._swap
        if swap is not None:
            swap(loop, task)
        else:
            if prev is not None:
                _leave_task(loop, prev)
            _enter_task(loop, task)
        return (self._leave, loop, prev, task, coro, host)

    def _leave(self, token: Any) -> None:
        _, loop, prev, task, coro, host = token
        swap = _asyncio_internals._swap
        if swap is not None:
            swap(loop, prev)
        else:
            _leave_task(loop, task)
            if prev is not None:
                _enter_task(loop, prev)
        self._after_step(coro, host)

    # -- hosts ---------------------------------------------------------------------------
    def _host_for(self, coro: Any, loop: asyncio.AbstractEventLoop) -> _Host | None:
        if id(loop) not in self.loops:
            self.start_if_running()
            if id(loop) not in self.loops:
                return None
        host = None
        free = self.free.get(id(loop))
        while free:
            candidate = free.pop()
            if candidate.is_clean():
                host = candidate
                break
        if host is None:
            host = _Host(loop)
            name = getattr(coro, "__qualname__", type(coro).__name__)
            task = loop.create_task(_HostCoro(host), name=f"dneio native host of {name}")
            _asyncio_internals.hide(task)
            host.task = task
        result: _Host = self._record(coro, host)
        return result

    def _keep_free(self, host: _Host) -> bool:
        free = self.free.setdefault(id(host.loop), [])
        if len(free) >= _FREE_HOSTS or id(host.loop) not in self.loops:
            return False
        free.append(host)
        return True

    def _quit(self, host: _Host) -> None:
        _quit(host)

    def _quit_from_anywhere(self, host: _Host) -> None:
        try:
            host.loop.call_soon_threadsafe(_quit, host)
        except RuntimeError:  # the loop is closed
            pass

    def adopt(self, coro: Any, first_yield: Any, context: Context) -> bool:
        """Let ``coro``'s host task carry it on from ``first_yield``, in ``context``."""
        key = id(coro)
        host = self.records.get(key)
        if host is None or self.runner.current_task(host.loop) is not host.task:
            return False
        del self.records[key]
        host.ref = None
        host.adopted = coro
        host.first_yield = first_yield
        host.context = context
        task: Any = host.task
        _asyncio_internals.show(task)
        _adopted_tasks.add(task)
        task.add_done_callback(_adopted_done)
        host.wake()
        return True


def _quit(host: _Host) -> None:
    if host.ended or host.adopted is not None:
        return
    host.quit = True
    try:
        host.wake()
    except RuntimeError:  # the loop is closed
        pass


RUNNER = AsyncioRunner()


def _setup_compiled() -> None:
    """Hand the compiled asyncio shift what it needs (again, after a test swapped any)."""
    # Calls from Python of the compiled methods these classes inherit, taken
    # directly by the interpreter (see own_methods).
    own_methods(AsyncioSlot)
    own_methods(AsyncioContinuation)
    if _asyncio_c is not None:
        _asyncio_c.setup(
            get_running_loop=_get_running_loop,
            current_task=RUNNER.current_task,
            enter_task=_enter_task,
            leave_task=_leave_task,
            runner=RUNNER,
            hosting=HOSTING,
            start_hosting=RUNNER.hosting.start_if_running,
            slot_type=AsyncioSlot,
            continuation_type=AsyncioContinuation,
            # While one of these hosts is loaded, the Python step runs: its
            # frame tells them an asyncio task was stepped inside theirs.
            nesting=_registry_nesting(),
            swap=_asyncio_internals._swap,
            current_tasks=_asyncio_internals.current_tasks_dict() if RUNNER.internals_ok else None,
            free_hosts=_FREE_HOSTS,
        )
        # Native code inside asyncio tasks enters and leaves its host there.
        HOSTING.set_compiled(_asyncio_c.Hook(HOSTING))
        # The attributes read on every shift and hosting, where they are
        # plain slots of these classes: read at their offsets.
        _asyncio_c.setup_slot_reads(Hosting, AsyncioHosting, _Host)


def _registry_nesting() -> list[tuple[str, str]]:
    from ..._core import _registry

    return _registry._nesting


_setup_compiled()

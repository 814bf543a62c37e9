"""The trio runner: ``shift`` inside a trio task."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Generator
from contextvars import Context
from typing import TYPE_CHECKING, Any

import outcome
import trio
import trio.lowlevel as tl

from ..._core import _driver_py, _registry
from ..._core._adoption import adopted, carry_on
from ..._core._impl import compiled, own_methods
from ..._core._queue import ThreadState, current_state
from .._base import HostRunner
from .._entry import HOSTING, Hosting, HostRecords
from .._parking import (
    CANCELLED,
    PENDING,
    RESUMED,
    HostContinuation,
    Slot,
)
from . import _internals as _trio_internals

_trio_c: Any = None
if compiled is not None:
    try:
        from . import _trio_c
    except ImportError:  # not built: the pure-Python slot and step serve
        _trio_c = None

# What a synchronous step sends into the parked task; the outcome itself is
# on the slot, so no Outcome object is built per synchronous resumption.
_WOKEN = object()


class PyTrioSlotCore(Slot):
    """The hot part of :class:`TrioSlot`: its fields and what a wake-up calls.

    The compiled twin is ``_trio_c.TrioSlotCore``, which also serves as the
    iterator of the task's ``shift`` in synchronous mode (instead of
    :meth:`TrioRunner._wait`); it hands every unusual case to the ``*_slow``
    methods, which are this class's own methods under another name.
    """

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

    def abort(self, raise_cancel: Any) -> tl.Abort:
        if self.try_cancel():
            if self.cancel_stop() is not None:
                return self.abort_with_stop()
            return tl.Abort.SUCCEEDED
        return tl.Abort.FAILED

    def abort_with_stop(self) -> tl.Abort:
        """Cancelled, but an ``on_cancel`` callback raised ``KeyboardInterrupt``
        or ``SystemExit``: the task raises that instead of ``Cancelled``."""
        stop = self.cancel_stop()
        assert stop is not None
        tl.reschedule(self.task, outcome.Error(stop))
        return tl.Abort.FAILED

    def check_resumable(self, k: object, here: bool) -> None:
        if not here:
            return  # run_sync_soon says if the run is over, and nothing is claimed then
        if RUNNER.internals_ok:
            running = _trio_internals.current_runner_or_none() is self.task._runner
        else:
            try:
                running = tl.current_trio_token() is self.token
            except RuntimeError:
                running = False
        if not running:
            raise RuntimeError(
                f"cannot resume {k!r} here: its trio run is over, or is not the one "
                "running on this thread"
            )

    def _wake(self, st: ThreadState) -> None:
        if not RUNNER.synchronous:
            _fifo_for(self.token).wake(self.task)
        elif _trio_internals.ki_pending(self.task):
            # A Ctrl-C arrived in protected code: trio hands it to the main
            # task at its next checkpoint.  Tasks that resume each other
            # synchronously may never reach one (a ping-pong over a channel
            # with no other wait): trio's loop runs this one instead, and
            # the KeyboardInterrupt goes in first.
            _trio_internals.wake_later(self.task, _WOKEN)
        else:
            _trio_internals.step(self.task, _WOKEN)

    _check_resumable_slow = check_resumable
    _wake_slow = _wake


if TYPE_CHECKING:
    _SlotBase = PyTrioSlotCore
elif _trio_c is None:
    _SlotBase = PyTrioSlotCore
else:

    class _SlotBase(_trio_c.TrioSlotCore, Slot):
        __slots__ = ()
        _check_resumable_slow = PyTrioSlotCore.check_resumable
        _wake_slow = PyTrioSlotCore._wake
        abort_with_stop = PyTrioSlotCore.abort_with_stop


class TrioSlot(_SlotBase):
    """Where a trio task parked in ``shift`` waits for its continuation."""

    __slots__ = ()

    def line_up_deferred(self) -> bool:
        fifo = _fifos.get(self.token)
        if fifo is None or not fifo.in_flight:
            return False
        self.state = RESUMED
        fifo.waiting.append(self.task)
        return True

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        self.token.run_sync_soon(fn)

    call_soon = call_soon_threadsafe


class TrioContinuation(HostContinuation):
    """A continuation of a trio task.

    Resuming it is protected from KeyboardInterrupt the way trio protects its
    own machinery: a Ctrl-C arriving between claiming the parked task and
    stepping it is delivered to the main task at its next checkpoint instead,
    so no claimed task is left unwoken (which would hang the run).
    """

    __slots__ = ()

    @tl.enable_ki_protection
    def send(self, value: Any) -> None:
        self._s.resume(self, False, value)

    @tl.enable_ki_protection
    def throw(self, exc: BaseException) -> None:
        if not isinstance(exc, BaseException):
            raise TypeError(f"throw() takes an exception instance, not {exc!r}")
        self._s.resume(self, True, exc)

    __call__ = send

    @tl.enable_ki_protection
    def _resume_unless_cancelled(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
        return self._s.resume(self, is_exc, value), None

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
        self.hosting = NativeHosting()

    def in_task(self) -> bool:
        if self.internals_ok:
            return _trio_internals.current_task_or_none() is not None
        try:
            tl.current_task()
        except RuntimeError:
            return False
        return True

    def shift_if_in_task(
        self, func: Callable[[Any], Any]
    ) -> Generator[Any, Any, Any] | tuple[Any] | None:
        # Asked first on every host task's shift once trio is loaded: one call, not two.
        if self.internals_ok:
            if _trio_internals.current_task_or_none() is None:
                return None
        elif not self.in_task():
            return None
        return self.shift(func)

    def is_running(self) -> bool:
        try:
            tl.current_trio_token()
        except RuntimeError:
            return False
        return True

    @tl.enable_ki_protection
    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any] | tuple[Any]:
        if HOSTING.trio is None:
            self.hosting.start_if_running()
        # The current task and its run's token (inline: this runs for every shift).
        task: Any = _trio_internals.current_task_or_none() if self.internals_ok else None
        token: Any = task._runner.trio_token if task is not None else None
        if token is None:
            task, token = tl.current_task(), tl.current_trio_token()
        slot = TrioSlot(current_state(), task, token)
        if not slot.must_wait(func, TrioContinuation, self.synchronous):
            return (slot.outcome(),)
        return self._wait(slot)

    @tl.enable_ki_protection
    def _wait(self, slot: TrioSlot) -> Generator[Any, Any, Any]:
        """The task's wait in a ``shift`` it must suspend in."""
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

    def adopt(self, coro: Any, first_yield: Any, context: Context) -> None:
        if self.hosting.adopt(coro, first_yield, context):
            return
        name = getattr(coro, "__qualname__", type(coro).__name__)
        tl.spawn_system_task(
            adopted, coro, first_yield, context, name=f"dneio-adopted:{name}"
        )


# Sent to an idle host task to make it finish.
_QUIT = object()

#: Idle hosts kept per run for the next native coroutines.
_FREE_HOSTS = 8


class _Host:
    """A parked system task that stands in as trio's current task for one native coroutine."""

    __slots__ = ("adopted", "context", "coro", "ended", "idle", "ref", "root", "run", "task")

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.task: Any = None
        self.root: Any = None  # the task's cancel status while no scope is open on it
        self.coro: Any = None  # the coroutine it carries on, once adopted
        self.context: Context | None = None  # that coroutine's own context
        self.ref: Any = None  # the coroutine it belongs to (a weak reference if possible)
        self.adopted = False
        self.ended = False
        self.idle = False  # parked in its idle wait, and not woken yet

    def idle_abort(self, raise_cancel: Any) -> tl.Abort:
        if self.task.parent_nursery.cancel_scope.cancel_called:
            # The run is ending: go away.
            self.ended = True
            self.idle = False
            return tl.Abort.SUCCEEDED
        # A cancel scope opened by the native coroutine was cancelled while
        # the coroutine is not in a trio operation (it is suspended in a
        # native shift, or running).  Like a shielded wait, it sees the
        # cancellation at its next trio checkpoint inside the scope.  (trio
        # asks only once, so the host must be ended by hand with the run.)
        self.run.stuck.add(self)
        self.run.watch()
        return tl.Abort.FAILED

    def is_clean(self) -> bool:
        task = self.task
        return (
            not self.ended
            and task._cancel_status is self.root
            and not task.child_nurseries
            and self not in self.run.stuck
        )


async def _host_main(host: _Host) -> Any:
    return await _HostLoop(host)


class _HostLoop:
    __slots__ = ("host",)

    def __init__(self, host: _Host) -> None:
        self.host = host

    def __await__(self) -> Generator[Any, Any, Any]:
        host = self.host
        try:
            host.idle = True
            sent = yield _trio_internals.WaitTaskRescheduled(host.idle_abort)
            host.idle = False
            coro, host.coro = host.coro, None
            if coro is None:
                if type(sent) is outcome.Value and sent.value is _QUIT:
                    return None
                return sent.unwrap()
            # Adopted: the coroutine suspended in a trio operation that registered
            # this task; what trio sends is for it.  It goes on in its own context.
            return (yield from carry_on(coro, coro.send, sent, host.context))
        finally:
            host.ended = True


class _Run:
    """What the hosting keeps for one trio run."""

    __slots__ = ("free", "runner", "stuck", "token", "watcher")

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        # trio makes a run's token on first request; this is the run's thread.
        self.token = tl.current_trio_token()
        self.free: list[_Host] = []
        self.stuck: set[_Host] = set()
        self.watcher: Any = None

    def watch(self) -> None:
        """Make sure the hosts that refused a cancellation end with the run."""
        if self.watcher is None:
            self.watcher = tl.spawn_system_task(_watch_end, self, name="dneio native host watch")

    def end_stuck(self, raise_cancel: Any) -> tl.Abort:
        # Called once, when the system nursery is cancelled: the run is ending.
        stuck, self.stuck = self.stuck, set()
        for host in stuck:
            _quit(host)
        return tl.Abort.SUCCEEDED


async def _watch_end(run: _Run) -> None:
    await tl.wait_task_rescheduled(run.end_stuck)


def _quit(host: _Host) -> None:
    """Make an idle host finish (it must be parked in its idle wait)."""
    if host.ended or host.coro is not None or not host.idle:
        return
    host.ended = True
    host.idle = False
    tl.reschedule(host.task, outcome.Value(_QUIT))


if TYPE_CHECKING or _trio_c is None:
    _HostingBase = HostRecords
else:

    class _HostingBase(_trio_c.HostingCore, HostRecords):
        __slots__ = ()


class NativeHosting(_HostingBase):
    """trio's part of the hosting (see ``_hosting``): a host task per native coroutine.

    Active only while at least one trio run is (its instrument turns it off
    at the end of the run), and only where trio's internals passed the check.
    """

    __slots__ = ("runs",)

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[int, _Run] = {}

    def start_if_running(self) -> None:
        if not RUNNER.internals_ok:
            return
        runner = _trio_internals.current_runner_or_none()
        if runner is None or id(runner) in self.runs:
            return
        self.runs[id(runner)] = _Run(runner)
        tl.add_instrument(_EndOfRun(self, id(runner)))
        HOSTING.trio = self
        HOSTING.update()

    def stop(self, run_id: int) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            for key, host in list(self.records.items()):
                if host.run is run:
                    del self.records[key]
        if not self.runs:
            HOSTING.trio = None
            HOSTING.update()

    # -- entering and leaving native code ------------------------------------------
    def enter_in_task(self, coro: Any) -> Any:
        task = _trio_internals.current_task_or_none()
        if task is None:
            return None
        return self._enter(coro, task._runner, task)

    def enter_outside_tasks(self, coro: Any) -> Any:
        runner = _trio_internals.current_runner_or_none()
        if runner is None:
            return None
        return self._enter(coro, runner, None)

    def _enter(self, coro: Any, runner: Any, prev: Any) -> Any:
        host = self.records.get(id(coro))
        if host is None or host.run.runner is not runner or host.ended:
            host = self._host_for(coro, runner)
            if host is None:
                return None
        _trio_internals.make_current(host.task)
        return (self._leave, prev, host, coro)

    def _leave(self, token: Any) -> None:
        prev, host, coro = token[1], token[2], token[3]
        if prev is None:
            _trio_internals.clear_current()
        else:
            _trio_internals.make_current(prev)
        self._after_step(coro, host)

    # -- hosts ---------------------------------------------------------------------------
    def _host_for(self, coro: Any, runner: Any) -> _Host | None:
        run = self.runs.get(id(runner))
        if run is None:
            # Another thread's run started the hosting: follow this run too.
            self.start_if_running()
            run = self.runs.get(id(runner))
            if run is None:
                return None
        host = None
        while run.free:
            candidate = run.free.pop()
            if candidate.is_clean():
                host = candidate
                break
        if host is None:
            host = _Host(run)
            try:
                host.task = tl.spawn_system_task(_host_main, host, name="dneio native host")
                _trio_internals.start_now(host.task)
            except Exception:  # the system nursery is closed: the run is ending
                return None
            host.root = host.task._cancel_status
        result: _Host = self._record(coro, host)
        return result

    def _keep_free(self, host: _Host) -> bool:
        if len(host.run.free) >= _FREE_HOSTS:
            return False
        host.run.free.append(host)
        return True

    def _quit(self, host: _Host) -> None:
        _quit(host)

    def _quit_from_anywhere(self, host: _Host) -> None:
        try:
            host.run.token.run_sync_soon(_quit, host)
        except Exception:  # the run is over
            pass

    def adopt(self, coro: Any, trap: Any, context: Context) -> bool:
        """Let ``coro``'s host task carry it on, suspended in ``trap``, in ``context``."""
        key = id(coro)
        host = self.records.get(key)
        if host is None or _trio_internals.current_task_or_none() is not host.task:
            return False
        host.coro = coro
        host.context = context
        host.idle = False
        if not _trio_internals.park_on(host.task, trap):
            host.coro = None
            host.idle = True
            return False
        del self.records[key]
        host.adopted = True
        host.ref = None
        host.run.stuck.discard(host)
        return True


class _EndOfRun(trio.abc.Instrument):
    def __init__(self, hosting: NativeHosting, run_id: int) -> None:
        self.hosting = hosting
        self.run_id = run_id

    def after_run(self) -> None:
        self.hosting.stop(self.run_id)


# Entering and leaving a native coroutine's host are trio bookkeeping too: a
# Ctrl-C in between would leave the wrong task current.  (The compiled
# enter_in_task and leave run no Python code but these methods.)
Hosting.enter = tl.enable_ki_protection(Hosting.enter)  # type: ignore[method-assign]
Hosting.leave = tl.enable_ki_protection(Hosting.leave)  # type: ignore[method-assign]
for _name in ("_host_for", "_release", "_watch"):
    setattr(NativeHosting, _name, tl.enable_ki_protection(getattr(NativeHosting, _name)))
del _name
_driver_py.drive = tl.enable_ki_protection(_driver_py.drive)


def _marks_code() -> bool:
    """Does this trio protect a function itself (not a wrapper it returns)?"""

    def probe() -> None:
        pass

    return tl.enable_ki_protection(probe) is probe


def _protect(fn: Callable[..., Any]) -> None:
    # The primitives' funcs.  Recent releases of trio mark the function's
    # code, which costs its callers nothing.
    tl.enable_ki_protection(fn)


def _protect_with_wrapper(fn: Callable[..., Any]) -> None:
    # Older releases return a wrapper, whose frame carries the mark: it
    # takes the function's place where the function is defined (a module
    # or a class), so that its callers call the wrapper.
    owner: Any = sys.modules[fn.__module__]
    *path, name = fn.__qualname__.split(".")
    for part in path:
        owner = getattr(owner, part)
    if getattr(owner, name) is fn:
        setattr(owner, name, tl.enable_ki_protection(fn))


_registry.add_ki_protector(_protect if _marks_code() else _protect_with_wrapper)

RUNNER = TrioRunner()


_py_enter_in_task = NativeHosting.enter_in_task
_py_shift_if_in_task = TrioRunner.shift_if_in_task
# The continuation's protected Python methods (the compiled ones in front of
# them serve only a resumption that just stores its outcome).
_py_continuation = {
    name: TrioContinuation.__dict__[name]
    for name in ("send", "throw", "__call__", "_resume_unless_cancelled")
}


def _own_compiled_methods() -> None:
    # Calls from Python of the compiled methods these classes inherit, such
    # as a slot's resume, taken directly by the interpreter (see own_methods).
    for cls in (TrioSlot, TrioContinuation, NativeHosting):
        own_methods(cls)


def _setup_compiled(use: bool = True) -> str:
    """Let the compiled trio shift, step and hosting serve, where they may.

    Returns why they do not ("" when they do).  ``use=False`` hands
    everything back to the Python reference (for tests).
    """
    problem = "not wanted" if not use else _compiled_problem()
    if problem:
        if _trio_c is not None:
            _trio_c.disable()
            if type(HOSTING.compiled) is _trio_c.Hook:
                HOSTING.set_compiled(None)
        TrioRunner.shift_if_in_task = _py_shift_if_in_task  # type: ignore[method-assign]
        NativeHosting.enter_in_task = _py_enter_in_task  # type: ignore[method-assign]
        for name, method in _py_continuation.items():
            setattr(TrioContinuation, name, method)
        _own_compiled_methods()
    else:
        assert _trio_c is not None
        _trio_c.setup(
            run_context=_trio_internals._run.GLOBAL_RUN_CONTEXT,
            runner=RUNNER,
            hosting=HOSTING,
            start_hosting=RUNNER.hosting.start_if_running,
            slot_type=TrioSlot,
            continuation_type=TrioContinuation,
            wait_type=_trio_internals.WaitTaskRescheduled,
            woken=_WOKEN,
            # What the compiled step leaves to Python is trio's run loop's
            # bookkeeping, so it runs protected from Ctrl-C as trio's does.
            step=tl.enable_ki_protection(_trio_internals.step),
            after_send=tl.enable_ki_protection(_trio_internals.after_send),
            deliver_pending_cancel=tl.enable_ki_protection(_trio_internals.deliver_pending_cancel),
            abort_succeeded=tl.Abort.SUCCEEDED,
            abort_failed=tl.Abort.FAILED,
            after_task_step=tl.enable_ki_protection(_trio_internals.after_task_step),
            current_trio_token=tl.current_trio_token,
            fast_trap=_trio_internals.plain_trap_ok(),
        )
        # A resumption before the task has parked (inside func, on its
        # thread) only stores the outcome: compiled, with no Python call.
        _trio_c.setup_continuation(
            TrioContinuation,
            _py_continuation["send"],
            _py_continuation["throw"],
            _py_continuation["_resume_unless_cancelled"],
        )
        # Entering a hosted coroutine from a trio task, and leaving it.
        NativeHosting.enter_in_task = _trio_c.HostingCore.enter_in_task  # type: ignore[method-assign]
        if HOSTING.compiled is None:
            # Native code inside trio tasks enters and leaves its host there.
            # (The asyncio runner's compiled hook, once loaded, serves both.)
            HOSTING.set_compiled(_trio_c.Hook(HOSTING))
        # A task's shift: one compiled call (the registry asks it first, for
        # every host task's shift, once trio is loaded).
        # (A class attribute: an instance one would cost the runner's other
        # attribute reads their fast path.)
        TrioRunner.shift_if_in_task = staticmethod(_trio_c.shift_if_in_task)  # type: ignore[method-assign]
        _own_compiled_methods()
        # The attributes read on every shift and hosting, where they are
        # plain slots of these classes: read at their offsets (a class
        # changed afterwards is checked again at its next read).
        _trio_c.setup_slot_reads(
            tl.Task, _trio_internals._run.Runner, _Host, _Run, Hosting, NativeHosting
        )
    _registry.refresh_hot_path()
    return problem


def _compiled_problem() -> str:
    if _trio_c is None:
        return "the compiled trio part is not built"
    if not RUNNER.internals_ok:
        return RUNNER.problem
    return _trio_internals.compiled_step_problem()


#: Why the compiled trio shift and step do not serve ("" when they do).
COMPILED_PROBLEM = _setup_compiled()


def start_hosting() -> None:
    """If a trio run is active on this thread, make sure native code entered from it is hosted."""
    RUNNER.hosting.start_if_running()

"""What trio and asyncio continuations share: states, claiming, cancellation, threads.

A parked host task keeps a :class:`Slot`; the continuation handed to
``func`` is a thin handle on it.  The task never references the handle, so
if every holder drops it unresumed, the handle's finaliser wakes the task
with :class:`ContinuationDropped` instead of leaving it parked forever.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core._continuation import (
    AnsweringContinuation,
    report_unraisable,
    run_cancel_callbacks,
    spent_error,
)
from .._core._impl import compiled
from .._core._queue import ThreadState, current_state, release_hold, resume

# Life of a host continuation.
PENDING = 0  # func is still running in the task; nothing parked yet
EARLY = 1  # resumed while func was running: shift returns without suspending
PARKED = 2  # the task is suspended, waiting for a resumption
RESUMED = 3  # claimed by a resumption; the task is being (or will be) woken
CANCELLED = 4  # the task was cancelled while parked; resumption is a no-op
SPENT = 5  # func raised before resuming: the error went to the task
DROPPED = 6  # the handle was dropped before func returned


# Claims (resume, cancel, drop) of host continuations are atomic across threads.
_claim_lock = threading.Lock()


class ContinuationDropped(RuntimeError):
    """Raised in a task whose continuation was garbage-collected unresumed."""


_DROPPED_MESSAGE = (
    "the continuation of this task was dropped without being resumed, so nothing could "
    "ever resume it; keep a reference to k until you call k.send/k.throw"
)


class PySlotCore:
    """The hot part of :class:`Slot`: its fields and every claim on them.

    The compiled core has a twin of it (``SlotCore``) that claims without a
    lock: no Python code runs between its reading and writing the state.
    This one takes ``_claim_lock`` for each claim.
    """

    __slots__ = ("home", "is_exc", "k_ref", "shielded", "state", "value")

    def __init__(self, home: ThreadState) -> None:
        self.state = PENDING
        self.home = home
        self.value: Any = None
        self.is_exc = False
        self.shielded = False
        # A weak reference to the continuation, once it has on_cancel
        # callbacks: they live on the continuation, so that callbacks which
        # refer to it do not keep it alive through the parked task.
        self.k_ref: weakref.ref[Any] | None = None

    # Provided by Slot; named here for the type checker.
    def _wake(self, st: ThreadState) -> None:
        raise NotImplementedError

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        raise NotImplementedError

    def line_up_deferred(self) -> bool:
        raise NotImplementedError

    def queue_behind(self, st: ThreadState) -> None:
        raise NotImplementedError

    def check_resumable(self, k: object, here: bool) -> None:
        raise NotImplementedError

    def func_failed(self, k: Any) -> BaseException | None:
        raise NotImplementedError

    def must_wait(
        self,
        func: Callable[[Any], object],
        make_continuation: Callable[[Any], Any],
        synchronous: bool,
    ) -> bool:
        """Call ``func`` with a continuation; False if the task may go on at once.

        True means the task must suspend: it is parked, or it was resumed
        inside ``func`` but resumptions made earlier have to run first, so
        it waits its turn.  If ``func`` raises before resuming, the error
        goes to the task and the continuation is spent.
        """
        k = make_continuation(self)
        try:
            func(k)
        except BaseException:
            with _claim_lock:
                spent = self.state == PENDING
                if spent:
                    self.state = SPENT
            if spent and k._callbacks:
                stop = self.func_failed(k)
                if stop is not None:
                    raise stop  # noqa: B904 - func's error is its context
            raise
        del k  # if func kept no reference, the continuation is dropped here
        with _claim_lock:
            state = self.state
            if state == PENDING:
                self.state = PARKED
                return True
        if state == DROPPED:
            raise ContinuationDropped(_DROPPED_MESSAGE)
        # EARLY: resumed inside func.
        if not synchronous:
            return self.line_up_deferred()
        st = self.home
        if not (st.queue or st.hold):
            return False
        self.state = RESUMED
        self.queue_behind(st)
        return True

    def resume(self, k: object, is_exc: bool, value: Any) -> bool:
        """Claim and deliver; False (nothing delivered) if the task was cancelled."""
        st = current_state()
        here = st is self.home
        # Resuming a cancelled task is a no-op anyway; resumed inside func on
        # the task's own thread, the task is running (and an early resumption
        # only stores the value for it).  A spent continuation is told so by
        # the claim, whatever became of its loop.
        if self.state == PARKED or (self.state == PENDING and not here):
            self.check_resumable(k, here)
        # An exception is raised in the task with the traceback it has now
        # (others may raise the same object meanwhile).
        outcome = (value, value.__traceback__) if is_exc else value
        # Another thread may be resuming or cancelling the same continuation.
        with _claim_lock:
            state = self.state
            if state == PARKED:
                self.state = RESUMED
            elif state == PENDING:
                self.state = EARLY
            elif state == CANCELLED:
                return False
            else:
                raise spent_error(k)
            self.is_exc = is_exc
            self.value = outcome
        if state == PARKED:
            if here:
                resume(st, self, False, None)
            else:
                try:
                    self.call_soon_threadsafe(self.resume_at_home)
                except BaseException:
                    # The loop closed meanwhile: nothing was delivered.
                    with _claim_lock:
                        if self.state == RESUMED:
                            self.state = PARKED
                            self.value = None
                            self.is_exc = False
                    raise
        if self.k_ref is not None and isinstance(k, PyHostCore):
            # (k_ref is set once callbacks are registered.)  They can never
            # be called now: let go with the resumption.
            k._callbacks = None
        return True

    def resume_at_home(self) -> None:
        resume(self.home, self, False, None)

    def _deliver(self, st: ThreadState, is_exc: bool, value: Any) -> None:
        # The task's code is not native, even if a native coroutine resumed it.
        driving = st.driving
        st.driving = None
        try:
            self._wake(st)
        finally:
            st.driving = driving

    def outcome(self) -> Any:
        """The stored outcome, as the woken task sees it."""
        value = self.value
        if self.is_exc:
            self.value = None
            exc, tb = value
            try:
                raise exc.with_traceback(tb)
            finally:
                del exc, tb, value
        return value

    def _claim_cancel(self) -> bool:
        """The task is being cancelled: CANCELLED unless shielded or resumed; True if so."""
        with _claim_lock:
            if self.state != PARKED or self.shielded:
                return False
            self.state = CANCELLED
            self.value = None
        return True

    def dropped(self) -> None:
        """The continuation was dropped unresumed: wake the task with ContinuationDropped."""
        with _claim_lock:
            state = self.state
            if state == PENDING:
                self.state = DROPPED
                return
            if state != PARKED:
                return
            self.state = RESUMED
            self.is_exc = True
            self.value = (ContinuationDropped(_DROPPED_MESSAGE), None)
        try:
            self.call_soon_threadsafe(self.resume_at_home)
        except Exception:  # the loop is gone, and the task with it
            pass


class PyHostCore:
    """The hot part of :class:`HostContinuation` (the compiled core has a twin, ``HostCore``)."""

    __slots__ = ("__weakref__", "_callbacks", "_s")

    def __init__(self, slot: Any) -> None:
        self._s = slot
        self._callbacks: list[Callable[[], object]] | None = None

    def send(self, value: Any) -> None:
        self._s.resume(self, False, value)

    def throw(self, exc: BaseException) -> None:
        if not isinstance(exc, BaseException):
            raise TypeError(f"throw() takes an exception instance, not {exc!r}")
        self._s.resume(self, True, exc)

    def __call__(self, value: Any) -> None:
        self._s.resume(self, False, value)

    def _resume_unless_cancelled(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
        # Claimed under the lock that cancellation takes too: exactly one wins.
        return self._s.resume(self, is_exc, value), None

    def is_cancelled(self) -> bool:
        return bool(self._s.state == CANCELLED)

    def __del__(self) -> None:
        s = self._s
        if s.state == PENDING or s.state == PARKED:
            s.dropped()


if TYPE_CHECKING:
    SlotCore = PySlotCore
    HostCore = PyHostCore
elif compiled is not None:
    SlotCore = compiled.SlotCore
    HostCore = compiled.HostCore
    compiled.setup_hosts(spent_error, lambda: ContinuationDropped(_DROPPED_MESSAGE))
else:
    SlotCore = PySlotCore
    HostCore = PyHostCore


class Slot(SlotCore):
    """The state a parked host task shares with its continuation."""

    __slots__ = ()

    # -- provided by each runner -----------------------------------------
    def _wake(self, st: ThreadState) -> None:
        """Make the parked task run (or schedule it) with the stored outcome."""
        raise NotImplementedError

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` on the task's own thread, from its loop."""
        raise NotImplementedError

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Run ``fn`` soon from the loop (we are on its thread)."""
        raise NotImplementedError

    def line_up_deferred(self) -> bool:
        """Deferred mode, resumed inside ``func``: wait behind tasks woken earlier?

        If tasks woken earlier have not run yet, line up behind them (the
        slot becomes RESUMED) and return True; else return False.
        """
        return False

    def queue_behind(self, st: ThreadState) -> None:
        """Synchronous mode: wait in the thread's queue behind earlier resumptions."""
        st.queue.append((self, False, None))

    def report(self, exc: BaseException, what: str) -> None:
        """Report an error nobody can receive (the runner's own way where it has one)."""
        report_unraisable(exc, what)

    def report_safely(self, exc: BaseException, what: str) -> None:
        """``report``, which must not raise: it runs in the middle of a host's cancellation."""
        try:
            self.report(exc, what)
        except BaseException:
            report_unraisable(exc, what)

    def check_resumable(self, k: object, here: bool) -> None:
        """Raise a clear error, before anything is claimed, if the task's loop cannot run it.

        ``here``: the resumer runs on the task's own thread.
        """

    # -- cancellation --------------------------------------------------------
    def try_cancel(self) -> bool:
        """The task is being cancelled: give up the wait unless shielded or resumed.

        True if given up: the slot is CANCELLED, and its ``value`` is None,
        or the ``KeyboardInterrupt`` or ``SystemExit`` an ``on_cancel``
        callback raised, which the runner raises in the task instead of its
        cancellation (``cancel_stop``).
        """
        if not self._claim_cancel():
            return False
        k: Any = self.k_ref() if self.k_ref is not None else None
        callbacks = k._callbacks if k is not None else None
        if callbacks:
            k._callbacks = None
            st = self.home
            # The host is in the middle of delivering a cancellation: no task
            # may run until it is done, so resumptions made by the callbacks
            # wait in the queue.  A callback's error cannot stop the others,
            # nor the cancellation: it is reported.  One that stops the
            # program cannot be reported away, nor raised here, in the middle
            # of the host's cancellation: the task raises it.
            st.hold += 1
            try:
                stop = run_cancel_callbacks(callbacks, self.report_safely)
            finally:
                release_hold(st, self.call_soon)
            if stop is not None:
                self.value = stop
        return True

    def func_failed(self, k: Any) -> BaseException | None:
        """``func`` raised before resuming ``k``: the wait is over, without a value.

        Whoever holds ``k`` learns it as from a cancellation: its
        ``on_cancel`` callbacks run, each once, so that a primitive ``func``
        registered it with drops it (its operation keeps what it would
        have delivered).  A callback's error is reported; the first
        ``KeyboardInterrupt`` or ``SystemExit`` one raised is returned, for
        the task to raise instead of ``func``'s error.
        """
        callbacks = k._callbacks
        k._callbacks = None
        if not callbacks:
            return None
        return run_cancel_callbacks(callbacks, self.report_safely)

    def cancel_stop(self) -> BaseException | None:
        """A cancelled slot's ``KeyboardInterrupt`` or ``SystemExit`` from an
        ``on_cancel`` callback, which the task raises instead of the
        cancellation; None if there is none."""
        value = self.value
        if self.state == CANCELLED and isinstance(value, BaseException):
            return value
        return None


class HostContinuation(HostCore, AnsweringContinuation[None, Any, None]):
    """A continuation of a trio or asyncio task parked in ``shift``.

    ``send``, ``throw``, a call and the finaliser (which notices a
    continuation dropped unresumed) are compiled where the core is.
    """

    __slots__ = ()

    def _report_error(self, exc: Exception, what: str) -> None:
        """Report an error nobody can receive, the way this task's host does."""
        self._s.report_safely(exc, what)

    def on_cancel(self, callback: Callable[[], object]) -> None:
        if not callable(callback):
            raise TypeError(f"on_cancel() takes a callable, not {callback!r}")
        s = self._s
        state = s.state
        if state == CANCELLED:
            callback()
        elif state != PARKED and state != PENDING:
            return  # resumed (or dropped): it could never be called
        elif self._callbacks is None:
            self._callbacks = [callback]
            s.k_ref = weakref.ref(self)
        else:
            self._callbacks.append(callback)

    def shield(self) -> None:
        self._s.shielded = True

"""The Twisted runner: ``shift`` inside a coroutine run by ``Deferred.fromCoroutine``.

Twisted drives such a coroutine by adding a callback to each Deferred it
awaits; firing that Deferred steps the coroutine at once, on the caller's
stack.  So a task parked in ``shift`` waits on a Deferred of dneio's, and
resuming its continuation fires it: the coroutine has run to its next
suspension when ``k.send`` returns, using public API only.  Cancelling
the coroutine's Deferred cancels that Deferred, which reaches
``k.on_cancel``.  Resumptions from other threads hop through
``reactor.callFromThread``.

The only private parts are in ``_internals``: telling Twisted's
coroutines from asyncio's and trio's where both could be on the stack,
and repeating a cancellation that a shielded wait held off.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Generator
from contextvars import Context
from types import FrameType
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import threadable

from ..._core._adoption import adopted
from ..._core._impl import own_methods
from ..._core._queue import ThreadState, current_state
from .._base import HostRunner
from .._parking import CANCELLED, PENDING, HostContinuation, Slot
from . import _internals as _twisted_internals

_log = Logger(namespace="dneio")

# What dneio fires a parked coroutine's Deferred with: woken (the outcome
# is on the slot), or "wait on a fresh Deferred" (a cancellation held off).
_WOKEN = object()
_REPARK = object()

_modules = sys.modules
_get_ident = threading.get_ident


def installed_reactor() -> Any:
    """The reactor installed in this process, or None (never installs one itself)."""
    return _modules.get("twisted.internet.reactor")


class _Hops:
    """Calls made into a reactor's thread, run there in the order they were made.

    ``callFromThread`` alone does not promise that: on the asyncio reactor it
    goes through ``callLater(0)``, whose calls due at the same instant run
    in no particular order.
    """

    __slots__ = ("calls", "lock", "pending", "reactor")

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.lock = threading.Lock()
        self.calls: deque[Callable[[], object]] = deque()
        self.pending = False

    def call(self, fn: Callable[[], object]) -> None:
        with self.lock:
            self.calls.append(fn)
            if self.pending:
                return
            self.pending = True
        self.reactor.callFromThread(self.run)

    def run(self) -> None:
        while True:
            with self.lock:
                if not self.calls:
                    self.pending = False
                    return
                fn = self.calls.popleft()
            try:
                fn()
            except Exception:
                _log.failure("dneio: a resumption run from the reactor's thread raised")


_hops_lock = threading.Lock()


def _hops_for(reactor: Any) -> _Hops:
    if reactor is None:
        raise RuntimeError(
            "no Twisted reactor is installed, so a Twisted continuation cannot be resumed "
            "from another thread (or after being dropped); run the coroutines under a "
            "reactor (twisted.internet.task.react, reactor.run)"
        )
    # One per reactor, kept on it.
    hops = getattr(reactor, "_dneio_hops", None)
    if hops is None:
        with _hops_lock:
            hops = getattr(reactor, "_dneio_hops", None)
            if hops is None:
                hops = reactor._dneio_hops = _Hops(reactor)
    return hops


@own_methods
class TwistedSlot(Slot):
    __slots__ = ("cancel_pending", "deferred", "reactor", "status")

    def __init__(self, home: ThreadState, reactor: Any) -> None:
        # Slot.__init__, inlined: this runs for every shift.
        self.state = PENDING
        self.home = home
        self.value = None
        self.is_exc = False
        self.shielded = False
        self.k_ref = None
        self.reactor = reactor
        self.deferred: defer.Deferred[Any] | None = None
        # A cancellation arrived that the wait held off (shielded, or the
        # value was already claimed): repeat it once the value is delivered.
        self.cancel_pending = False
        self.status: Any = None

    def check_resumable(self, k: object, here: bool) -> None:
        if self.reactor is None and not here:
            # From another thread: refuse before claiming, so nothing is lost.
            self.reactor = installed_reactor()
            _hops_for(self.reactor)

    def call_soon_threadsafe(self, fn: Callable[[], object]) -> None:
        reactor = self.reactor if self.reactor is not None else installed_reactor()
        _hops_for(reactor).call(fn)

    call_soon = call_soon_threadsafe

    def report(self, exc: BaseException, what: str) -> None:
        _log.failure(f"dneio: {what}", _failure(exc))

    def cancelled_by_twisted(self, d: defer.Deferred[Any]) -> None:
        """The canceller of the Deferred the coroutine waits on."""
        if d is not self.deferred:
            return
        if self.try_cancel():
            stop = self.cancel_stop()
            if stop is not None:
                # An on_cancel callback raised KeyboardInterrupt or
                # SystemExit: the coroutine raises that instead.
                d.errback(_failure(stop))
            return  # else Deferred.cancel now fails d with CancelledError
        # Shielded, or resumed and about to be woken: the coroutine keeps
        # waiting (on a fresh Deferred), gets its value, and the
        # cancellation is repeated after that.
        if not self.cancel_pending:
            self.cancel_pending = True
            if RUNNER.internals_ok:
                self.status = _twisted_internals.cancelling_status()
        d.callback(_REPARK)

    def _wake(self, st: ThreadState) -> None:
        d = self.deferred
        assert d is not None
        self.deferred = None
        d.callback(_WOKEN)
        if self.cancel_pending:
            self.cancel_pending = False
            status, self.status = self.status, None
            if status is not None:
                # What cancelling the coroutine's Deferred again would do.
                status.deferred.cancel()


def _failure(exc: BaseException) -> Any:
    from twisted.python.failure import Failure

    return Failure(exc, type(exc), exc.__traceback__)  # type: ignore[no-untyped-call]


@own_methods
class TwistedContinuation(HostContinuation):
    __slots__ = ()

    def __repr__(self) -> str:
        return "<twisted continuation of a coroutine run by Deferred.fromCoroutine>"


class TwistedRunner(HostRunner):
    name = "twisted"

    def __init__(self) -> None:
        self.internals_ok = _twisted_internals.check()
        self.problem = _twisted_internals.problem
        # Firing a Deferred runs its callbacks at once: always synchronous.
        self.synchronous = True

    def set_mode(self, mode: str) -> None:
        if mode == "synchronous":
            return
        if mode == "deferred":
            raise RuntimeError(
                "Twisted resumes coroutines by firing a Deferred, which runs them at once "
                "using public API only: the twisted runner has no deferred mode"
            )
        super().set_mode(mode)

    def reactor_here(self) -> bool:
        """True if the installed reactor is running on this thread."""
        reactor = _modules.get("twisted.internet.reactor")
        # threadable.isInIOThread(), inlined: the reactor records its thread there.
        return reactor is not None and reactor.running and threadable.ioThread == _get_ident()

    def in_task(self) -> bool:
        return self.in_task_at(sys._getframe(1))

    def in_task_at(self, frame: FrameType) -> bool:
        """``in_task()``, for the code running in ``frame``.

        Asked once trio and asyncio have said no.  In the reactor's thread,
        a coroutine that no other runner claims is Twisted's: the cheap
        answer, right for every coroutine a Twisted program runs.
        Elsewhere (Deferreds fired with no reactor running) the stack tells.
        """
        if self.reactor_here():
            return True
        return self.internals_ok and _twisted_internals.driven_by_twisted(frame)

    def inside_other_task(self, frame: FrameType) -> bool:
        return self.internals_ok and _twisted_internals.driven_by_twisted(frame)

    def is_running(self) -> bool:
        return self.reactor_here()

    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any] | tuple[Any]:
        slot = TwistedSlot(current_state(), _modules.get("twisted.internet.reactor"))
        if not slot.must_wait(func, TwistedContinuation, True):
            return (slot.outcome(),)
        return self._wait(slot)

    def _wait(self, slot: TwistedSlot) -> Generator[Any, Any, Any]:
        """The coroutine's wait in a ``shift`` it must suspend in."""
        while True:
            d = slot.deferred = defer.Deferred(slot.cancelled_by_twisted)
            sent = yield d
            if sent is _WOKEN:
                break
            if sent is not _REPARK:
                slot.try_cancel()  # the holder of k learns of it through on_cancel
                error = RuntimeError(
                    f"dneio parked this coroutine on a Deferred, but whatever steps it sent "
                    f"{sent!r} back instead of waiting: only Twisted (Deferred.fromCoroutine, "
                    "ensureDeferred) can run a coroutine that dneio takes for Twisted's"
                )
                stop = slot.cancel_stop()
                if stop is not None:
                    raise stop from error  # a callback's KeyboardInterrupt goes first
                raise error
        if slot.state == CANCELLED:  # pragma: no cover - Twisted fails d instead
            raise defer.CancelledError()
        return slot.outcome()

    def adopt(self, coro: Any, first_yield: Any, context: Context) -> None:
        d = defer.Deferred.fromCoroutine(adopted(coro, first_yield, context))
        d.addErrback(_adopted_failed)

    def adopts(self, yielded: object) -> bool:
        # A Deferred: Twisted carries the coroutine on, with or without a reactor.
        return isinstance(yielded, defer.Deferred)


def _adopted_failed(failure: Any) -> None:
    if failure.check(defer.CancelledError):
        return
    _log.failure(
        "dneio: a coroutine run by dneio.reset and adopted as a Twisted coroutine raised an "
        "exception that nobody received",
        failure,
    )


RUNNER = TwistedRunner()

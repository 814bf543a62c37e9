"""The native driver, in pure Python: ``reset`` drives a coroutine itself, with no event loop.

This is the complete reference for the compiled core (``_driver_c.c``),
which takes the hot paths and hands everything unusual back to the
functions here; :mod:`._driver` wires the two together.
"""

from __future__ import annotations

import collections.abc
import inspect
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, copy_context
from types import CoroutineType
from typing import Any, NoReturn, TypeVar

from ._continuation import (
    AnsweringContinuation,
    closed_error,
    report_unraisable,
    run_cancel_callbacks,
    spent_error,
)
from ._impl import local as _local
from ._queue import MAX_DEPTH, ThreadState, drain, resume
from ._registry import adopter, loop_runner, shift_in_task

_T = TypeVar("_T")

class _ShiftRequest:
    """Marks what ``shift`` yields to the native driver.

    Only dneio's driver should ever see it; the repr explains the one way a
    host loop can receive it instead.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return (
            "<dneio shift request: this task called dneio.shift while an event loop was "
            "running inside a native coroutine (one started by dneio.reset), which dneio "
            "cannot tell apart from the native coroutine itself; start event loops "
            "(asyncio.run, trio.run) outside native coroutines>"
        )


SHIFT = _ShiftRequest()

# The pure-Python ``shift`` yields a *park* to the driver: the list
# ``[SHIFT, func, callback, ...]``.  Its continuation keeps it: the
# ``on_cancel`` callbacks wait there, and its first item says what became of
# the wait: SHIFT while suspended, _CLOSED once the coroutine was closed
# there, _RESUMED once GeneratorExit was thrown in as a resumption.  (The
# compiled ``shift`` object plays the same part for the compiled core.)
_CLOSED = object()
_RESUMED = object()
_NO_PARK = (None,)  # the park of a continuation that never suspended: never cancelled

#: The entry hook, while a host needs one: an object with ``enter(st, coro)``
#: and ``leave(token)``.  Every step of a native coroutine ``coro`` runs
#: between ``token = enter(st, coro)`` and ``leave(token)`` unless ``enter``
#: returns None.  The hosts use it to make a task that belongs to ``coro``
#: current while it runs (``dneio._hosts._entry``).  Set it with
#: ``_driver.set_entry_hook``, which tells the compiled core too.
entry_hook: Any = None

#: Called by ``reset`` while no entry hook is set and one of the modules
#: named in ``entry_probe_modules`` is loaded: it lets a host install its
#: hook lazily.
entry_probe: Any = None
entry_probe_modules: tuple[str, ...] = ()


def _run_cancel_callbacks(callbacks: list[Callable[[], object]]) -> None:
    """A native coroutine was closed while suspended: tell whoever holds its continuation.

    A callback's error cannot stop the others, nor the closing: it is
    reported.  A ``KeyboardInterrupt`` or ``SystemExit`` is raised once every
    callback has run (in the coroutine, where it takes the place of the
    closing's ``GeneratorExit``); the first one, if several are.
    """
    stop = run_cancel_callbacks(callbacks, report_unraisable)
    if stop is not None:
        raise stop


def _closed_here(park: list[Any]) -> None:
    """The pure-Python ``shift`` got GeneratorExit while suspended in ``park``."""
    if park[0] is SHIFT:
        park[0] = _CLOSED
        callbacks = park[2:]
        del park[1:]
        if callbacks:
            _run_cancel_callbacks(callbacks)


def _take_shift(yielded: Any, default: Any) -> Any:
    """The ``func`` of the shift that yielded ``yielded``, or ``default`` if it is not one.

    Either ``shift`` may have: this twin's (a park list) or the compiled one
    (its shift object), as both can be in use in one process.
    """
    if type(yielded) is list and yielded and yielded[0] is SHIFT:
        return yielded[1]
    if compiled_take_shift is not None:
        return compiled_take_shift(yielded, default)
    return default


#: The compiled core's ``take_shift``, where it is loaded (set by :mod:`._driver`).
compiled_take_shift: Any = None


class NativeContinuation(AnsweringContinuation[Any, Any, Any]):
    """A continuation of a coroutine driven by :func:`dneio.reset`.

    It runs the coroutine on whichever thread resumes it, in the coroutine's
    own ``contextvars`` context.
    """

    __slots__ = ("_claimed", "_coro", "_ctx", "_park")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._ctx: Any = None
        self._park: Any = _NO_PARK

    def __repr__(self) -> str:
        coro = self._coro
        where = "spent" if coro is None else getattr(coro, "__qualname__", repr(coro))
        closed = " (closed)" if self.is_cancelled() else ""
        return f"<native continuation of {where}{closed}>"

    # The hot path: send() is resume() and the first step of drive(),
    # specialised and inlined; anything unusual goes through drive().
    def send(self, value: Any) -> Any:
        coro = self._coro
        if coro is None:
            raise _spent_or_closed(self)
        self._coro = None
        st = _local.state
        if st.depth >= MAX_DEPTH or st.queue or st.hold or entry_hook is not None:
            if self._park[0] is _CLOSED:
                self._coro = coro
                raise closed_error(self)
            self._claimed = coro
            return resume(st, self, False, value)
        st.depth += 1
        ctx = self._ctx
        try:
            prev = st.driving
            st.driving = coro
            try:
                yielded = ctx.run(_coro_send, coro, value)
            except StopIteration as stop:
                answer = stop.value
                yielded = _FINISHED
            finally:
                st.driving = prev
            if type(yielded) is list and yielded and yielded[0] is SHIFT:
                k = _new_continuation(NativeContinuation)
                k._coro = coro
                k._ctx = ctx
                k._park = yielded
                func = yielded[1]
                try:
                    answer = func(k)
                except BaseException as exc:
                    answer = _func_failed(st, coro, k, func, exc)
            elif yielded is not _FINISHED:
                answer = _after_foreign(st, coro, ctx, yielded)
        except BaseException:
            st.depth -= 1
            if self._park[0] is _CLOSED:
                # The coroutine was closed while it waited: nothing ran.
                self._coro = coro
                closed = closed_error(self)
                if not st.depth and st.queue and not st.hold:
                    drain(st, closed)
                raise closed from None
            if not st.depth and st.queue and not st.hold:
                drain(st, reraise=False)
            raise
        st.depth -= 1
        if not st.depth and st.queue and not st.hold:
            drain(st)
        return answer

    def throw(self, exc: BaseException) -> Any:
        if not isinstance(exc, BaseException):
            raise TypeError(f"throw() takes an exception instance, not {exc!r}")
        coro = self._coro
        if coro is None or self.is_cancelled():
            raise _spent_or_closed(self)
        if isinstance(exc, GeneratorExit):
            # A resumption that closes the coroutine, not a cancelled wait.
            self._park_resumed()
        self._coro = None
        self._claimed = coro
        # Thrown in with the traceback it has now, even if the resumption waits.
        return resume(_local.state, self, True, (exc, exc.__traceback__))

    __call__ = send

    def is_cancelled(self) -> bool:
        return self._park[0] is _CLOSED

    def on_cancel(self, callback: Callable[[], object]) -> None:
        if not callable(callback):
            raise TypeError(f"on_cancel() takes a callable, not {callback!r}")
        park = self._park
        state = park[0]
        if state is SHIFT and type(park) is list:
            park.append(callback)
        elif state is _CLOSED:
            callback()

    def _park_resumed(self) -> None:
        park = self._park
        if park[0] is SHIFT and type(park) is list:
            park[0] = _RESUMED

    def _take_callbacks(self) -> list[Callable[[], object]]:
        """``func`` raised before resuming: hand over the ``on_cancel`` callbacks."""
        park = self._park
        if park[0] is SHIFT and type(park) is list:
            callbacks = park[2:]
            del park[2:]
            return callbacks
        return []

    def _deliver(self, st: ThreadState, is_exc: bool, value: Any) -> Any:
        coro = self._claimed
        self._claimed = None
        if self.is_cancelled():
            # Closed after this resumption was queued: nothing can run.
            self._coro = coro
            raise closed_error(self)
        if is_exc:
            exc, tb = value
            value = exc.with_traceback(tb)
        return drive(st, coro, self._ctx, is_exc, value)


def is_live_native(k: object) -> bool:
    """True for a native continuation whose coroutine was not closed."""
    return type(k) is NativeContinuation and k._park[0] is not _CLOSED


_new_continuation = object.__new__
_FINISHED = object()
# Unbound, so that stepping a coroutine in its context makes no bound method
# (every coroutine the driver steps is a CoroutineType: see reset).
_coro_send = CoroutineType.send
_coro_throw = CoroutineType.throw


def _spent_or_closed(k: Any) -> BaseException:
    return closed_error(k) if k.is_cancelled() else spent_error(k)


def drive(st: ThreadState, coro: Any, ctx: Context, is_exc: bool, value: Any) -> Any:
    """Step ``coro`` in its context ``ctx`` until it shifts, finishes, or awaits something foreign.

    Returns the answer: what the ``func`` of its next ``shift`` returned, or
    its return value.  Exceptions from the coroutine propagate to the caller.
    """
    hook = entry_hook
    if hook is not None:
        token = hook.enter(st, coro)
        if token is not None:
            try:
                return _drive(st, coro, ctx, is_exc, value)
            finally:
                hook.leave(token)
    return _drive(st, coro, ctx, is_exc, value)


_NOT_SHIFT = object()


def _drive(st: ThreadState, coro: Any, ctx: Context, is_exc: bool, value: Any) -> Any:
    while True:
        prev = st.driving
        st.driving = coro
        try:
            if is_exc:
                yielded = ctx.run(_coro_throw, coro, value)
            else:
                yielded = ctx.run(_coro_send, coro, value)
        except StopIteration as stop:
            st.driving = prev
            return stop.value
        except BaseException:
            st.driving = prev
            raise
        st.driving = prev
        func = _take_shift(yielded, _NOT_SHIFT)
        if func is not _NOT_SHIFT:
            k = continuation_type(coro)
            k._ctx = ctx
            k._park = yielded
            try:
                return func(k)
            except BaseException as exc:
                if k._coro is None:
                    # func resumed k and then failed: that is the resumer's problem.
                    raise
                # func failed before resuming k: k is spent, and the error
                # surfaces at the ``await shift(...)``.
                k._coro = None
                is_exc, value = True, _explain_bad_func(func, _wait_gone(k, exc))
                continue
        is_exc, value = _foreign(coro, ctx, yielded)
        if not is_exc:
            return None


def _raise_spent(k: Any) -> Any:
    raise _spent_or_closed(k)


def _func_failed(
    st: ThreadState, coro: Any, k: NativeContinuation, func: Any, exc: BaseException
) -> Any:
    if k._coro is None:
        raise exc
    k._coro = None
    return drive(st, coro, k._ctx, True, _explain_bad_func(func, _wait_gone(k, exc)))


def _wait_gone(k: Any, exc: BaseException) -> BaseException:
    """``func`` raised ``exc`` before resuming ``k``: the wait is over, without a value.

    Whoever holds ``k`` learns it as from a cancellation (its ``on_cancel``
    callbacks run), so that a registry ``func`` put it in drops it.  Returns
    what the coroutine raises: ``exc``, or a ``KeyboardInterrupt`` or
    ``SystemExit`` a callback raised (``exc`` its context).
    """
    callbacks = k._take_callbacks()
    if callbacks:
        stop = run_cancel_callbacks(callbacks, report_unraisable)
        if stop is not None:
            stop.__context__ = exc
            return stop
    return exc


def _after_foreign(st: ThreadState, coro: Any, ctx: Context, yielded: Any) -> Any:
    is_exc, value = _foreign(coro, ctx, yielded)
    return drive(st, coro, ctx, True, value) if is_exc else None

def _explain_bad_func(func: Any, exc: BaseException) -> BaseException:
    if isinstance(exc, TypeError) and not callable(func):
        return TypeError(f"shift() takes a function that accepts a continuation, not {func!r}")
    return exc


def _foreign(coro: Any, ctx: Context, yielded: Any) -> tuple[bool, Any]:
    """A native coroutine awaited something that is not a dneio operation.

    With a host loop running on this thread, the coroutine is adopted as one
    of its tasks (going on in its own context ``ctx``) and ``(False, None)``
    is returned.  Otherwise the returned TypeError is to be thrown into it,
    so its ``finally`` blocks run.
    """
    # An awaitable of a host's own (a Twisted Deferred): that host carries
    # the coroutine on, whether or not its loop runs.
    runner = adopter(yielded) or loop_runner()
    if runner is not None:
        runner.adopt(coro, yielded, ctx)
        return False, None
    return True, TypeError(
        f"{_await_chain(coro)} yielded {yielded!r}, which dneio cannot serve: no trio, "
        "asyncio or Twisted loop is running on this thread to adopt the coroutine. In a "
        "coroutine run by dneio.reset, await only dneio operations (shift and what is "
        "built on it), or run the program under trio, asyncio or Twisted."
    )


def _await_chain(coro: Any) -> str:
    names: list[str] = []
    node = coro
    while node is not None and len(names) < 12:
        names.append(getattr(node, "__name__", type(node).__name__))
        node = getattr(node, "cr_await", None) or getattr(node, "gi_yieldfrom", None)
    return " -> ".join(f"{n}()" for n in names)


#: The class of the continuations ``drive`` hands out: this one, or its
#: compiled subclass (set by :mod:`._driver`).
continuation_type: type[NativeContinuation] = NativeContinuation


def reset(coro: Coroutine[Any, Any, _T]) -> Any:
    """Run ``coro`` now, on this thread, until it finishes or suspends in ``shift``.

    Returns the coroutine's return value if it finished, or else the answer:
    the value returned by the ``func`` passed to the ``shift`` it is suspended
    in.  Exceptions raised by the coroutine propagate out of ``reset``.

    The coroutine runs in its own ``contextvars`` context, a copy of the
    caller's: what it sets is its own, whoever resumes it later.

    ``reset`` is a plain function and needs no event loop; it may be called
    from inside trio or asyncio tasks, where it starts an independent
    coroutine.
    """
    if type(coro) is CoroutineType:
        # (A finished one is noticed when it refuses to run: asking for its
        # cr_frame here would make every coroutine carry a frame object.)
        if coro.cr_suspended or coro.cr_running:
            raise _started_error(coro)
    elif isinstance(coro, collections.abc.Coroutine):
        # Another kind of coroutine (Cython's, say): driven through a real one.
        coro = _awaiting(coro)
    else:
        hint = ""
        if callable(coro):
            hint = " (call the async function: reset(main()), not reset(main))"
        raise TypeError(f"reset() takes a coroutine object, not {coro!r}{hint}")
    if entry_hook is None and entry_probe_modules:
        modules = sys.modules
        for name in entry_probe_modules:
            if name in modules:
                entry_probe()
                break
    st = _local.state
    ctx = copy_context()
    if st.depth >= MAX_DEPTH:
        k = continuation_type(None)
        k._claimed = coro
        k._ctx = ctx
        return resume(st, k, False, None)
    st.depth += 1
    try:
        answer = drive(st, coro, ctx, False, None)
    except BaseException as exc:
        st.depth -= 1
        error = exc
        if isinstance(exc, RuntimeError) and type(coro) is CoroutineType and _refused(coro, exc):
            error = _started_error(coro)
        if not st.depth and st.queue and not st.hold:
            drain(st, error)
        if error is exc:
            raise
        raise error from None
    st.depth -= 1
    if not st.depth and st.queue and not st.hold:
        drain(st)
    return answer


async def _awaiting(coro: Coroutine[Any, Any, _T]) -> _T:
    return await coro


def _refused(coro: CoroutineType[Any, Any, Any], exc: BaseException) -> bool:
    """Did ``coro`` refuse to run (it had finished), rather than fail while running?"""
    if coro.cr_frame is not None:
        return False
    code = coro.cr_code
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return False  # it ran, and raised this itself
        tb = tb.tb_next
    return True


def _started_error(coro: CoroutineType[Any, Any, Any]) -> RuntimeError:
    name = getattr(coro, "__qualname__", repr(coro))
    if coro.cr_running:
        what = "is running right now"
    elif coro.cr_suspended:
        what = (
            "was started already and is suspended at an await: resume it through the "
            "continuation it handed out (k.send or k.throw)"
        )
    else:
        what = "has already finished (or was closed): pass a fresh coroutine, reset(f())"
    return RuntimeError(
        f"reset() starts a coroutine that has not run yet, but {name}() {what}; "
        "nothing was run"
    )


async def never_run() -> None:
    """A coroutine that is never started: the compiled reset learns from one what a fresh one is."""


# A StopIteration raised out of an await would be read as the await
# returning: it comes out as a RuntimeError whose cause it is, as PEP 479
# has it for generators (the compiled core says the same).
STOP_MESSAGE = (
    "StopIteration was raised into an await, where it would read as the await returning: "
    "it is this error's __cause__"
)


def _stop_out_as_error() -> NoReturn:
    """Raise the error that the StopIteration being handled comes out of an await as."""
    raise RuntimeError(STOP_MESSAGE) from sys.exc_info()[1]


def _shift_body(func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
    # The hot path: natively, one thread-local read, one list and one yield.
    st = _local.state
    if st.driving is not None:
        park: Any = [SHIFT, func]
        try:
            return (yield park)
        except GeneratorExit:
            if park[0] is not SHIFT:
                raise  # thrown in by a resumption
        except StopIteration:
            _stop_out_as_error()  # binds no name: a local would enlarge every parked coroutine
        # The coroutine is being closed while it waits here (handled outside
        # the except clause, so that callback errors are not chained to it).
        _closed_here(park)
        raise GeneratorExit
    # (No new local: each one would make every parked native coroutine bigger.)
    try:
        park = host_shift(func)
        if type(park) is tuple:
            return park[0]  # resumed before the task had to suspend
        return (yield from park)
    except StopIteration:
        _stop_out_as_error()


_PROBE = object()


def _as_coroutine_function(gen_func: Any) -> Any:
    """``gen_func`` made to create coroutine objects rather than generators.

    Its body is unchanged; a coroutine object differs from a generator in
    what matters here: awaiting it a second time raises RuntimeError instead
    of returning None, as with the compiled ``shift``, and one that is never
    awaited is reported.  If this Python does not allow it, the generator
    (a generator-based coroutine) is used as it is.
    """
    code = gen_func.__code__
    fallback = types.coroutine(gen_func)
    try:
        flags = (code.co_flags & ~inspect.CO_GENERATOR) | inspect.CO_COROUTINE
        new_code = code.replace(co_flags=flags, co_name="shift", co_qualname="shift")
        made = types.FunctionType(new_code, gen_func.__globals__, "shift")
        # It must behave: suspend with what the body yields, return what
        # is sent, refuse to be awaited twice.
        probe = made(None)
        if type(probe) is not types.CoroutineType:
            return fallback
        st = _local.state
        st.driving, driving = _PROBE, st.driving
        try:
            first = probe.send(None)
        finally:
            st.driving = driving
        if first != [SHIFT, None]:
            probe.close()
            return fallback
        try:
            probe.send(42)
        except StopIteration as stop:
            if stop.value != 42:
                return fallback
        else:
            probe.close()
            return fallback
        try:
            probe.send(None)
        except RuntimeError:
            return made
        except BaseException:
            pass
        return fallback
    except Exception:
        return fallback


#: The body of ``await shift(func)`` (documented in :mod:`._shift`).
shift = _as_coroutine_function(_shift_body)


NO_RUNNER_MESSAGE = (
    "dneio.shift() was called with nothing to suspend: it must run inside a coroutine "
    "started with dneio.reset(coro), inside a trio or asyncio task (uvloop and "
    "anyio included), or inside a coroutine run by Twisted (Deferred.fromCoroutine, "
    "ensureDeferred). Start the coroutine with dneio.reset(...), trio.run(...), "
    "asyncio.run(...) or Deferred.fromCoroutine(...)."
)

#: The frames of dneio's own between host_shift and the coroutine that awaits
#: shift: the _shift generator.  (The compiled shift asks the registry itself,
#: with its own count; see :mod:`._driver`.)
_SHIFT_FRAMES = 1


def host_shift(func: Callable[[Any], Any]) -> Generator[Any, Any, Any] | tuple[Any]:
    """Serve ``shift(func)`` in the current host task.

    Returns the generator to run for it (``yield from``), or ``(value,)`` if
    ``func`` resumed the task with ``value`` before it had to suspend.
    """
    if not callable(func):
        raise TypeError(f"shift() takes a function that accepts a continuation, not {func!r}")
    body = shift_in_task(func, _SHIFT_FRAMES)
    if body is None:
        raise RuntimeError(NO_RUNNER_MESSAGE)
    return body

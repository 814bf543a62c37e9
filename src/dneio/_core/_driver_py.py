"""The native driver, in pure Python: ``reset`` drives a coroutine itself, with no event loop.

This is the complete reference for the compiled core (``_driver_c.c``),
which takes the hot paths and hands everything unusual back to the
functions here; :mod:`._driver` wires the two together.
"""

from __future__ import annotations

import collections.abc
import sys
import types
from collections.abc import Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any, TypeVar

from ._continuation import AnsweringContinuation, spent_error
from ._impl import local as _local
from ._queue import MAX_DEPTH, ThreadState, drain, resume
from ._registry import adopter, loop_runner, shift_in_task

_T = TypeVar("_T")

class _ShiftRequest:
    """What ``shift`` yields to the native driver (the function is in ``ThreadState.request``).

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


class NativeContinuation(AnsweringContinuation[Any, Any, Any]):
    """A continuation of a coroutine driven by :func:`dneio.reset`.

    It runs the coroutine on whichever thread resumes it.
    """

    __slots__ = ("_claimed", "_coro")

    def __init__(self, coro: Any) -> None:
        self._coro = coro

    def __repr__(self) -> str:
        coro = self._coro
        where = "spent" if coro is None else getattr(coro, "__qualname__", repr(coro))
        return f"<native continuation of {where}>"

    # The hot path: send() is resume() and the first step of drive(),
    # specialised and inlined; anything unusual goes through drive().
    def send(self, value: Any) -> Any:
        coro = self._coro
        if coro is None:
            raise spent_error(self)
        self._coro = None
        st = _local.state
        if st.depth >= MAX_DEPTH or st.queue or st.hold or entry_hook is not None:
            self._claimed = coro
            return resume(st, self, False, value)
        st.depth += 1
        try:
            prev = st.driving
            st.driving = coro
            try:
                yielded = coro.send(value)
            except StopIteration as stop:
                answer = stop.value
                yielded = _FINISHED
            finally:
                st.driving = prev
            if yielded is SHIFT:
                func = st.request
                st.request = None
                k = _new_continuation(NativeContinuation)
                k._coro = coro
                try:
                    answer = func(k)
                except BaseException as exc:
                    answer = _func_failed(st, coro, k, func, exc)
            elif yielded is not _FINISHED:
                answer = _after_foreign(st, coro, yielded)
        except BaseException:
            st.depth -= 1
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
        if coro is None:
            raise spent_error(self)
        self._coro = None
        self._claimed = coro
        return resume(_local.state, self, True, exc)

    __call__ = send

    def _deliver(self, st: ThreadState, is_exc: bool, value: Any) -> Any:
        coro = self._claimed
        self._claimed = None
        return drive(st, coro, is_exc, value)


_new_continuation = object.__new__
_FINISHED = object()


def drive(st: ThreadState, coro: Any, is_exc: bool, value: Any) -> Any:
    """Step ``coro`` until it shifts, finishes, or awaits something foreign.

    Returns the answer: what the ``func`` of its next ``shift`` returned, or
    its return value.  Exceptions from the coroutine propagate to the caller.
    """
    hook = entry_hook
    if hook is not None:
        token = hook.enter(st, coro)
        if token is not None:
            try:
                return _drive(st, coro, is_exc, value)
            finally:
                hook.leave(token)
    return _drive(st, coro, is_exc, value)


def _drive(st: ThreadState, coro: Any, is_exc: bool, value: Any) -> Any:
    while True:
        prev = st.driving
        st.driving = coro
        try:
            if is_exc:
                yielded = coro.throw(value)
            else:
                yielded = coro.send(value)
        except StopIteration as stop:
            st.driving = prev
            return stop.value
        except BaseException:
            st.driving = prev
            raise
        st.driving = prev
        if yielded is SHIFT:
            func = st.request
            st.request = None
            k = continuation_type(coro)
            try:
                return func(k)
            except BaseException as exc:
                if k._coro is None:
                    # func resumed k and then failed: that is the resumer's problem.
                    raise
                # func failed before resuming k: k is spent, and the error
                # surfaces at the ``await shift(...)``.
                k._coro = None
                is_exc, value = True, _explain_bad_func(func, exc)
                continue
        is_exc, value = _foreign(coro, yielded)
        if not is_exc:
            return None


def _raise_spent(k: Any) -> Any:
    raise spent_error(k)


def _func_failed(
    st: ThreadState, coro: Any, k: NativeContinuation, func: Any, exc: BaseException
) -> Any:
    if k._coro is None:
        raise exc
    k._coro = None
    return drive(st, coro, True, _explain_bad_func(func, exc))


def _after_foreign(st: ThreadState, coro: Any, yielded: Any) -> Any:
    is_exc, value = _foreign(coro, yielded)
    return drive(st, coro, True, value) if is_exc else None


def _explain_bad_func(func: Any, exc: BaseException) -> BaseException:
    if isinstance(exc, TypeError) and not callable(func):
        return TypeError(f"shift() takes a function that accepts a continuation, not {func!r}")
    return exc


def _foreign(coro: Any, yielded: Any) -> tuple[bool, Any]:
    """A native coroutine awaited something that is not a dneio operation.

    With a host loop running on this thread, the coroutine is adopted as one
    of its tasks and ``(False, None)`` is returned.  Otherwise the returned
    TypeError is to be thrown into it, so its ``finally`` blocks run.
    """
    # An awaitable of a host's own (a Twisted Deferred): that host carries
    # the coroutine on, whether or not its loop runs.
    runner = adopter(yielded) or loop_runner()
    if runner is not None:
        runner.adopt(coro, yielded)
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

    ``reset`` is a plain function and needs no event loop; it may be called
    from inside trio or asyncio tasks, where it starts an independent
    coroutine.
    """
    if type(coro) is not CoroutineType and not isinstance(coro, collections.abc.Coroutine):
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
    if st.depth >= MAX_DEPTH:
        k = continuation_type(None)
        k._claimed = coro
        return resume(st, k, False, None)
    st.depth += 1
    try:
        answer = drive(st, coro, False, None)
    except BaseException as exc:
        st.depth -= 1
        if not st.depth and st.queue and not st.hold:
            drain(st, exc)
        raise
    st.depth -= 1
    if not st.depth and st.queue and not st.hold:
        drain(st)
    return answer


@types.coroutine
def shift(func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
    """The body of ``await shift(func)`` (documented in :mod:`._shift`)."""
    # The hot path: natively, one thread-local read and one yield.
    st = _local.state
    if st.driving is not None:
        st.request = func
        return (yield SHIFT)
    return (yield from host_shift(func))


NO_RUNNER_MESSAGE = (
    "dneio.shift() was called with nothing to suspend: it must run inside a coroutine "
    "started with dneio.reset(coro), inside a trio or asyncio task (uvloop and "
    "anyio included), or inside a coroutine run by Twisted (Deferred.fromCoroutine, "
    "ensureDeferred). Start the coroutine with dneio.reset(...), trio.run(...), "
    "asyncio.run(...) or Deferred.fromCoroutine(...)."
)

#: The frames of dneio's own between host_shift and the coroutine that awaits
#: shift: the _shift generator on the pure-Python path, none for the compiled
#: shift (set by :mod:`._driver`).
shift_frames = 1


def host_shift(func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
    """The generator that serves ``shift(func)`` in the current host task."""
    if not callable(func):
        raise TypeError(f"shift() takes a function that accepts a continuation, not {func!r}")
    body = shift_in_task(func, shift_frames)
    if body is None:
        raise RuntimeError(NO_RUNNER_MESSAGE)
    return body

"""Continuations: the rest of a suspended coroutine, as a single-shot callback."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any, Generic, TypeAlias, TypeVar

import outcome

Answer = TypeVar("Answer")
Send = TypeVar("Send")
Return = TypeVar("Return")
_S = TypeVar("_S")


class ContinuationSpentError(RuntimeError):
    """A continuation was resumed a second time.

    Continuations are single-shot: each one may be resumed (``send``,
    ``throw``, ``resume`` or a call) exactly once.
    """


class CoroutineClosedError(ContinuationSpentError):
    """A native continuation was resumed after its coroutine was closed.

    Closing a coroutine suspended in ``shift`` (``coro.close()``, or the
    garbage collector finalizing it) is how a native wait is cancelled: the
    continuation's ``on_cancel`` callbacks run, ``is_cancelled()`` becomes
    true, and resuming it raises this error, since there is nothing left to
    resume.
    """


class AnsweringContinuation(Generic[Answer, Send, Return]):
    """The rest of a coroutine suspended in ``await shift(func)``.

    ``func`` receives it and may resume it once, at any later time and from
    any thread, with :meth:`send`, :meth:`throw`, :meth:`resume` or a plain
    call.  The coroutine then continues from its ``await shift(...)``, which
    returns the value sent (or raises the exception thrown).

    When resumption returns, the coroutine has already run up to its next
    suspension point (see ``docs/guarantees.md`` for the exceptions: deep
    nesting and the deferred fallback modes).  Natively, resumption returns
    the *answer*: what the ``func`` of the coroutine's next ``shift`` returned,
    or the coroutine's return value if it finished.  Under a host runner
    (trio, asyncio) it returns ``None``.
    """

    __slots__ = ()

    def send(self, value: Send) -> Answer | Return:
        """Resume the coroutine, making its ``await shift(...)`` return ``value``."""
        raise NotImplementedError

    def throw(self, exc: BaseException) -> Answer | Return:
        """Resume the coroutine, making its ``await shift(...)`` raise ``exc``."""
        raise NotImplementedError

    def resume(self, result: outcome.Outcome[Send]) -> Answer | Return:
        """Resume with an :class:`outcome.Value` (sent) or :class:`outcome.Error` (thrown)."""
        if isinstance(result, outcome.Value):
            return self.send(result.value)
        if isinstance(result, outcome.Error):
            return self.throw(result.error)
        raise TypeError(
            f"resume() takes an outcome.Value or outcome.Error, not {type(result).__name__}; "
            "use send(value) or throw(exception) to resume with a plain value"
        )

    def __call__(self, value: Send) -> Answer | Return:
        """The same as :meth:`send`, so a continuation can be passed as a callback."""
        return self.send(value)

    def is_cancelled(self) -> bool:
        """True once the waiting task has been cancelled (natively: its coroutine closed).

        Resuming a cancelled host continuation is a no-op; resuming a native
        one whose coroutine was closed raises :class:`CoroutineClosedError`.
        """
        return False

    def on_cancel(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once if the waiting task is cancelled (now, if it already is).

        Natively, closing the suspended coroutine (``coro.close()``, or the
        garbage collector finalizing it) is its cancellation.
        """

    def shield(self) -> None:
        """Make the operation uncancellable from now on.

        A cancellation that arrives while the continuation is still pending
        no longer interrupts the wait: the task stays suspended until the
        continuation is resumed, receives the value, and sees the
        cancellation at its next checkpoint (trio's ``Abort.FAILED``).
        """


#: A continuation whose answer and return value are ``None``: the common case.
Continuation: TypeAlias = AnsweringContinuation[None, _S, None]


def closed_error(k: object) -> CoroutineClosedError:
    return CoroutineClosedError(
        f"{k!r} cannot be resumed: its coroutine was closed while it waited in shift "
        "(by coro.close(), or by the garbage collector finalizing it), which cancels a "
        "native wait; there is nothing left to resume"
    )


def spent_error(k: object) -> ContinuationSpentError:
    return ContinuationSpentError(
        f"{k!r} was already resumed; a continuation can be resumed only once"
    )


def run_cancel_callbacks(
    callbacks: list[Callable[[], object]], report: Callable[[BaseException, str], None]
) -> BaseException | None:
    """Call a cancelled wait's ``on_cancel`` callbacks, each once, in order.

    A callback's error cannot stop the others: it goes to ``report``.  A
    ``KeyboardInterrupt`` or ``SystemExit`` cannot be reported away: the
    first one is returned, for the caller to raise where the task can
    receive it once the cancellation is complete.
    """
    stop: BaseException | None = None
    for callback in callbacks:
        try:
            callback()
        except (KeyboardInterrupt, SystemExit) as exc:
            if stop is None:
                stop = exc
        except BaseException as exc:
            report(exc, f"on_cancel callback {callback!r} raised")
    return stop


def report_unraisable(exc: BaseException, what: str) -> None:
    """Hand an error that has nowhere to go to ``sys.unraisablehook``; never raises.

    The hook gets the interpreter's own argument type, with ``err_msg``
    saying what failed, so that the default hook prints that line above the
    traceback, as it does for the interpreter's own reports.
    """
    hook = sys.unraisablehook
    try:
        make = _hook_args_type()
        if make is not None:
            hook(make((type(exc), exc, exc.__traceback__, f"dneio: {what}", None)))
            return
        if hook is not sys.__unraisablehook__:
            # Without the interpreter's type: one a hook written in Python reads the same.
            hook(
                types.SimpleNamespace(
                    exc_type=type(exc),
                    exc_value=exc,
                    exc_traceback=exc.__traceback__,
                    err_msg=f"dneio: {what}",
                    object=None,
                )
            )
            return
    except Exception:
        pass  # a failing hook: the interpreter's own way below
    try:
        exc.add_note(f"dneio: {what}")
        _Unraisable(exc)  # reported when dropped, on the next line
    except Exception:
        pass


_args_type: list[Callable[[tuple[object, ...]], Any] | None] = []


def _hook_args_type() -> Callable[[tuple[object, ...]], Any] | None:
    """The interpreter's argument type for ``sys.unraisablehook``, learnt once.

    Python does not name it: one report is caught to learn it.  A report
    another thread makes meanwhile is handed on to the hook it was meant for.
    """
    if _args_type:
        return _args_type[0]
    caught: list[Any] = []
    probe = ValueError("dneio: learning the unraisablehook argument type")
    previous = sys.unraisablehook
    catch = caught.append
    sys.unraisablehook = catch
    try:
        _Unraisable(probe)
    finally:
        if sys.unraisablehook is catch:  # not replaced by another thread meanwhile
            sys.unraisablehook = previous
    found: Callable[[tuple[object, ...]], Any] | None = None
    while caught:
        args = caught.pop(0)
        if getattr(args, "exc_value", None) is probe:
            found = type(args)
        else:
            previous(args)
        del args
    # The probe's traceback holds the frames that reported it, this one's
    # caller among them, and the hook's argument is not seen by the
    # collector: nothing of the probe may stay.
    probe.__traceback__ = None
    _args_type.append(found)
    return found


class _Unraisable:
    """Raises its exception when finalised: CPython hands it to ``sys.unraisablehook``."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc: BaseException | None = exc

    def __del__(self) -> None:
        exc, self.exc = self.exc, None
        if exc is not None:
            raise exc

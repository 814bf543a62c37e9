"""``Future``: a value that will be there later, for any number of waiters."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

import outcome

from .._core._continuation import AnsweringContinuation, report_unraisable
from .._core._driver import reset
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._errors import check_exception
from ._waiters import Waiters, wake_all

T = TypeVar("T")


class InvalidStateError(RuntimeError):
    """A :class:`Future` was given a result twice."""


class Future(Generic[T]):
    """The eventual result (a value or an exception) of some computation.

    :meth:`start` runs an awaitable right away and fills the future with
    what it returns or raises; :meth:`set`, :meth:`set_exception` and
    :meth:`set_outcome` fill it directly.  Any number of tasks may
    :meth:`get` it, before or after it is filled; waiters are woken in the
    order they arrived.  A waiter cancelled while it waits simply stops
    waiting; the result stays in the future for everyone else.
    """

    __slots__ = ("_done", "_is_exc", "_tb", "_unseen", "_value", "_waiters")

    def __init__(self) -> None:
        self._done = False
        self._is_exc = False
        self._value: Any = None
        # The exception's traceback when the future got it: every get()
        # raises it afresh from there, as asyncio.Future does, so that the
        # waiters' frames do not pile up on it.
        self._tb: TracebackType | None = None
        self._waiters: Waiters[None] = Waiters()
        # While an error that no one has been given is in the future: what
        # reports it if the future is dropped so.
        self._unseen: _NeverRetrieved | None = None

    def __repr__(self) -> str:
        if not self._done:
            return "<Future pending>"
        return f"<Future {'raised' if self._is_exc else 'returned'} {self._value!r}>"

    @classmethod
    def start(cls, awaitable: Awaitable[T] | Callable[[], Awaitable[T]]) -> Future[T]:
        """Run ``awaitable`` now (with :func:`dneio.reset`) and return its future.

        It runs until it first suspends before ``start`` returns.  A
        zero-argument callable that returns an awaitable is accepted too,
        as code written against the original ``dneio`` passes one.  If the
        awaitable awaits something dneio cannot serve, it continues as a
        task of the running trio or asyncio loop.
        """
        if not (inspect.isawaitable(awaitable) or callable(awaitable)):
            raise TypeError(
                f"Future.start() takes an awaitable, or a function that returns one, "
                f"not {awaitable!r}"
            )
        future: Future[T] = cls()
        reset(future._fill_from(awaitable))
        return future

    async def _fill_from(self, awaitable: Awaitable[T] | Callable[[], Awaitable[T]]) -> None:
        try:
            if not inspect.isawaitable(awaitable) and callable(awaitable):
                awaitable = awaitable()
            value = await awaitable
        except BaseException as exc:
            self._finish(True, exc)
        else:
            self._finish(False, value)

    def done(self) -> bool:
        """True once the future holds a value or an exception."""
        return self._done

    async def get(self) -> T:
        """Wait until the future is filled; return its value or raise its exception."""
        if self._done:
            if self._is_exc:
                self._seen()
                raise self._value.with_traceback(self._tb)
            return self._value  # type: ignore[no-any-return]
        return await shift(self.get_cb)

    @ki_sensitive
    def get_cb(self, k: AnsweringContinuation[Any, T, Any]) -> None:
        """Resume ``k`` with the result once there is one."""
        if not self._done:
            self._waiters.push(k, None)
        elif self._is_exc:
            if not k.is_cancelled():
                self._seen()
            k.throw(self._value.with_traceback(self._tb))
        else:
            k.send(self._value)

    def set(self, value: T) -> None:
        """Fill the future with ``value`` and wake every waiter."""
        self._finish(False, value)

    def set_exception(self, exc: BaseException) -> None:
        """Fill the future with ``exc`` (raised by every :meth:`get`) and wake every waiter."""
        self._finish(True, check_exception(exc, "set_exception()"))

    def set_outcome(self, result: outcome.Outcome[T]) -> None:
        """Fill the future with an :class:`outcome.Value` or :class:`outcome.Error`."""
        if isinstance(result, outcome.Value):
            self._finish(False, result.value)
        elif isinstance(result, outcome.Error):
            self._finish(True, result.error)
        else:
            raise TypeError(
                f"set_outcome() takes an outcome.Value or outcome.Error, not {result!r}"
            )

    def _seen(self) -> None:
        unseen = self._unseen
        if unseen is not None:
            self._unseen = None
            unseen.exc = None

    def _finish(self, is_exc: bool, value: Any) -> None:
        if self._done:
            raise InvalidStateError(
                f"{self!r} already has a result; a Future can be filled only once"
            )
        self._done = True
        self._is_exc = is_exc
        self._value = value
        if is_exc:
            self._tb = value.__traceback__
        waiting = self._waiters.pop_all() if self._waiters else None  # the live ones
        if waiting:
            wake_all(waiting, value, is_exc)
        elif is_exc and isinstance(value, Exception):
            # As asyncio does, an error no one ever gets is reported, not lost.
            self._unseen = _NeverRetrieved(value)


class _NeverRetrieved:
    """Reports a future's error when it is dropped with the future, unseen."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc: BaseException | None = exc

    def __del__(self) -> None:
        if self.exc is not None:
            report_unraisable(
                self.exc,
                "a Future's exception was never retrieved (no get() was made for it); "
                "await get() on the future, or handle the error where it is raised",
            )

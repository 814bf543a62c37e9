"""``run_all`` and ``make_n_in_parallel``: run awaitables side by side, collect results."""

from __future__ import annotations

import inspect
import reprlib
import traceback
from collections.abc import Awaitable, Callable
from types import CoroutineType
from typing import Any, TypeVar, overload

import outcome

from .._core._continuation import AnsweringContinuation
from .._core._driver import reset
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._waiters import resume_unless_cancelled

T = TypeVar("T")
T1 = TypeVar("T1")
T2 = TypeVar("T2")
T3 = TypeVar("T3")
T4 = TypeVar("T4")
T5 = TypeVar("T5")
T6 = TypeVar("T6")

_Runnable = Awaitable[Any] | Callable[[], Awaitable[Any]]


class _Gather:
    """Runs every awaitable at once and wakes the caller when the last one ends."""

    __slots__ = ("errors", "failures", "k", "remaining", "values")

    def __init__(self, count: int) -> None:
        self.values: list[Any] = [None] * count
        self.errors: dict[int, BaseException] = {}
        self.failures: list[int] = []  # indices, in the order they failed
        self.remaining = count
        self.k: AnsweringContinuation[Any, None, Any] | None = None

    async def child(self, i: int, runnable: _Runnable) -> None:
        try:
            if type(runnable) is not CoroutineType and (
                not inspect.isawaitable(runnable) and callable(runnable)
            ):
                runnable = runnable()
            self.values[i] = await runnable
        except BaseException as exc:
            self.errors[i] = exc
            self.failures.append(i)
        self.remaining -= 1
        if self.remaining:
            return
        k, self.k = self.k, None
        if k is None:
            return
        if not resume_unless_cancelled(k, False, None)[0] and self.failures:
            # The caller gave up waiting: nobody will look at these results,
            # so an error must surface here, in whoever resumed this child.
            _raise_first(self.outcomes(), self.failures)

    @ki_sensitive
    def park(self, k: AnsweringContinuation[Any, None, Any]) -> None:
        if self.remaining:
            self.k = k
        else:
            k.send(None)

    def outcomes(self) -> list[outcome.Outcome[Any]]:
        errors = self.errors
        return [
            outcome.Error(errors[i]) if i in errors else outcome.Value(value)
            for i, value in enumerate(self.values)
        ]

    async def run(self, runnables: list[_Runnable]) -> None:
        for i, runnable in enumerate(runnables):
            reset(self.child(i, runnable))
        if self.remaining:
            await shift(self.park)


async def run_all_outcomes(*awaitables: _Runnable) -> list[outcome.Outcome[Any]]:
    """Run every awaitable at once; return each one's :mod:`outcome`, in argument order.

    Nothing is raised for a failed awaitable: its entry is an
    :class:`outcome.Error`.  Returns once every awaitable has finished.
    """
    gather = _Gather(len(awaitables))
    await gather.run(list(awaitables))
    return gather.outcomes()


def _raise_first(outcomes: list[outcome.Outcome[Any]], failures: list[int]) -> None:
    first = failures[0]
    error = outcomes[first]
    assert isinstance(error, outcome.Error)
    exc = error.error
    if len(outcomes) > 1:
        exc.add_note(f"run_all: awaitable #{first} was the first of {len(outcomes)} to fail")
    for i, result in enumerate(outcomes):
        if i == first:
            continue
        if isinstance(result, outcome.Error):
            text = "".join(traceback.format_exception(result.error)).rstrip()
            exc.add_note(f"run_all: awaitable #{i} failed as well:\n{text}")
        elif isinstance(result, outcome.Value):
            exc.add_note(f"run_all: awaitable #{i} returned {reprlib.repr(result.value)}")
    raise exc


async def _run_all(runnables: list[_Runnable]) -> list[Any]:
    gather = _Gather(len(runnables))
    await gather.run(runnables)
    if gather.failures:
        _raise_first(gather.outcomes(), gather.failures)
    return gather.values


@overload
async def run_all(
    runnables: list[Awaitable[T]] | list[Callable[[], Awaitable[T]]], /
) -> list[T]: ...
@overload
async def run_all(a1: Awaitable[T1], /) -> tuple[T1]: ...
@overload
async def run_all(a1: Awaitable[T1], a2: Awaitable[T2], /) -> tuple[T1, T2]: ...
@overload
async def run_all(
    a1: Awaitable[T1], a2: Awaitable[T2], a3: Awaitable[T3], /
) -> tuple[T1, T2, T3]: ...
@overload
async def run_all(
    a1: Awaitable[T1], a2: Awaitable[T2], a3: Awaitable[T3], a4: Awaitable[T4], /
) -> tuple[T1, T2, T3, T4]: ...
@overload
async def run_all(
    a1: Awaitable[T1],
    a2: Awaitable[T2],
    a3: Awaitable[T3],
    a4: Awaitable[T4],
    a5: Awaitable[T5],
    /,
) -> tuple[T1, T2, T3, T4, T5]: ...
@overload
async def run_all(
    a1: Awaitable[T1],
    a2: Awaitable[T2],
    a3: Awaitable[T3],
    a4: Awaitable[T4],
    a5: Awaitable[T5],
    a6: Awaitable[T6],
    /,
) -> tuple[T1, T2, T3, T4, T5, T6]: ...
@overload
async def run_all(*awaitables: Awaitable[T]) -> tuple[T, ...]: ...
async def run_all(*awaitables: Any) -> Any:
    """Run every awaitable at once and return their results, in argument order.

    Each awaitable starts right away (with :func:`dneio.reset`), in argument
    order, and runs until it first suspends before the next one starts.
    ``run_all(a, b, c)`` returns a tuple; the original form, one list of
    awaitables or of zero-argument callables returning awaitables, returns
    a list.

    ``run_all`` returns only once every awaitable has finished, even if one
    fails: dneio cannot cancel a coroutine it runs natively, so none is left
    running behind the caller's back.  Then the first exception raised (in
    time) propagates, and the other results are attached to it as notes
    (``exc.__notes__``): the other exceptions with their tracebacks, and
    the other return values.  Use :func:`run_all_outcomes` to get every
    result as data instead.

    If the caller is cancelled while it waits, the awaitables keep running;
    when the last one ends, the first error among them (if any) is raised
    in whoever resumed that awaitable.
    """
    if len(awaitables) == 1 and isinstance(awaitables[0], list):
        return await _run_all(awaitables[0])
    return tuple(await _run_all(list(awaitables)))


async def make_n_in_parallel(make: Callable[[], Awaitable[T]], count: int) -> list[T]:
    """Call ``make()`` ``count`` times, run the awaitables at once, return their results.

    Failures are handled as by :func:`run_all`.
    """
    return await _run_all([make() for _ in range(count)])

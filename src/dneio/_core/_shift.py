"""``shift``: capture the rest of the current coroutine as a continuation."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from ._continuation import AnsweringContinuation
from ._driver import shift_fast
from ._driver_py import NO_RUNNER_MESSAGE
from ._impl import compiled, current_state
from ._registry import task_runner

__all__ = ["NO_RUNNER_MESSAGE", "current_runner", "shift"]

_Send = TypeVar("_Send")


def _typed_shift(func: Callable[[AnsweringContinuation[Any, _Send, Any]], object]) -> Coroutine[
    Any, Any, _Send
]:
    """Suspend the current coroutine and call ``func(k)`` with its continuation ``k``.

    ``await shift(func)`` returns the value ``k`` is resumed with (or raises
    the exception thrown into it).  If ``func`` resumes ``k`` before it
    returns, the coroutine does not suspend at all.  If ``func`` raises
    before resuming ``k``, the exception is raised at the ``await`` and ``k``
    is spent.

    The continuation extends to the nearest delimiter: under
    :func:`dneio.reset` (natively) that is the coroutine ``reset`` or the last
    resumption started; under trio or asyncio it is the current task.

    A ``func`` that is not callable is a TypeError at the ``await``.
    """
    raise NotImplementedError  # pragma: no cover - replaced below


# The documented signature, for type checkers and help(); the generator
# function itself at run time, to save a call on the hot path.
if TYPE_CHECKING:
    shift = _typed_shift
else:
    shift = shift_fast
    if compiled is None:
        shift.__doc__ = _typed_shift.__doc__
        shift.__name__ = shift.__qualname__ = "shift"


def current_runner() -> str | None:
    """Who would serve a ``shift`` here: ``"native"``, a host's name, or None."""
    if current_state().driving is not None:
        return "native"
    runner = task_runner()
    return None if runner is None else runner.name

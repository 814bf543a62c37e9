"""``shift``: capture the rest of the current coroutine as a continuation."""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from ._continuation import AnsweringContinuation
from ._native import SHIFT
from ._runner import task_runner
from ._scheduling import _cnative, _local, current_state

_Send = TypeVar("_Send")


NO_RUNNER_MESSAGE = (
    "dneio.shift() was called with nothing to suspend: it must run inside a coroutine "
    "started with dneio.reset(coro), or inside a trio or asyncio task (uvloop and "
    "anyio included). Start the coroutine with dneio.reset(...), trio.run(...) or "
    "asyncio.run(...)."
)


@types.coroutine
def _shift(func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
    # The hot path: natively, one thread-local read and one yield.
    st = _local.state
    if st.driving is not None:
        st.request = func
        return (yield SHIFT)
    return (yield from _host_shift(func))


def _host_shift(func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
    """The generator that serves ``shift(func)`` in the current host task."""
    if not callable(func):
        raise TypeError(f"shift() takes a function that accepts a continuation, not {func!r}")
    runner = task_runner()
    if runner is None:
        raise RuntimeError(NO_RUNNER_MESSAGE)
    return runner.shift(func)


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
elif _cnative is not None:
    shift = _cnative.shift
    _cnative.set_host_shift(_host_shift)
else:
    shift = _shift
    shift.__doc__ = _typed_shift.__doc__
    shift.__name__ = shift.__qualname__ = "shift"


def current_runner() -> str | None:
    """Who would serve a ``shift`` here: ``"native"``, ``"trio"``, ``"asyncio"`` or None."""
    if current_state().driving is not None:
        return "native"
    runner = task_runner()
    return None if runner is None else runner.name


def is_running_directly_under_trio() -> bool:
    """True in a trio task itself; false in a native coroutine, even one started by a trio task."""
    if current_state().driving is not None:
        return False
    runner = task_runner()
    return runner is not None and runner.name == "trio"

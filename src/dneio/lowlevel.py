"""The kit for writing effect handlers of one's own, and the runners' escape hatches.

An effect handler is an object whose methods take continuations.  The
pieces dneio's own primitives are built from are here:

* :class:`Waiters`, a first-in, first-out line of parked continuations that
  skips (and forgets) those whose task was cancelled;
* :func:`wake_all`, which resumes a batch of them in order, without letting
  one coroutine's error stop the others;
* :func:`resumptions_held`, a ``with`` block whose resumptions only claim
  their continuations, the coroutines running in order when it ends, so
  that a state change touching several waiters completes first.

Under trio and asyncio, dneio resumes parked tasks synchronously using
private internals of the runner, checked at first use (see
``docs/guarantees.md``).  If the check fails, the runner falls back to a
*deferred* mode that uses only public API and still keeps order;
:func:`runner_mode`, :func:`set_runner_mode` and :func:`runner_problem`
tell and force it.
"""

from __future__ import annotations

from typing import Literal

from ._core._batch import resumptions_held
from ._core._impl import CORE
from ._core._queue import MAX_DEPTH
from ._core._registry import get_runner
from ._primitives._waiters import Waiters, wake_all
from ._public import publish

Mode = Literal["synchronous", "deferred"]

__all__ = [
    "CORE",
    "MAX_DEPTH",
    "Mode",
    "Waiters",
    "resumptions_held",
    "runner_mode",
    "runner_problem",
    "set_runner_mode",
    "wake_all",
]


def runner_mode(runner: str) -> Mode:
    """``"synchronous"`` or ``"deferred"``: how ``runner`` ("trio" or "asyncio") resumes tasks.

    Importing the runner's library is a side effect of asking.
    """
    mode = get_runner(runner).mode()
    assert mode in ("synchronous", "deferred")
    return mode  # type: ignore[return-value]


def set_runner_mode(runner: str, mode: Mode) -> None:
    """Force ``runner`` into ``mode`` (for example to test code against the fallback).

    ``"synchronous"`` is refused with a RuntimeError where the runner's
    internals did not pass dneio's check.  The environment variables
    ``DNEIO_TRIO_MODE=deferred`` and ``DNEIO_ASYNCIO_MODE=deferred`` do the
    same at start-up.
    """
    get_runner(runner).set_mode(mode)


def runner_problem(runner: str) -> str:
    """Why ``runner``'s internals did not pass the check ("" if they did)."""
    return get_runner(runner).problem

publish("dneio.lowlevel", globals())


"""Escape hatches: how each host runner resumes tasks, and forcing its fallback.

Under trio and asyncio, dneio resumes parked tasks synchronously using
private internals of the runner, checked at first use (see
``docs/guarantees.md``).  If the check fails, the runner falls back to a
*deferred* mode that uses only public API and still keeps order.
"""

from __future__ import annotations

from typing import Literal

from ._runner import get_runner
from ._scheduling import MAX_DEPTH

Mode = Literal["synchronous", "deferred"]

__all__ = ["MAX_DEPTH", "Mode", "runner_mode", "runner_problem", "set_runner_mode"]


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

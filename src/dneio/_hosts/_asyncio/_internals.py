"""Synchronous resumption of asyncio tasks, using two private asyncio functions.

A task parked in ``shift`` waits on a future-like object of dneio's (see
``_asyncio._runner.AsyncioSlot``), so the task hands dneio its own wake-up callback
through the public future protocol.  Calling that callback directly runs
the task's step *now*; asyncio's step refuses to start while another task
is current, so the current task is set aside for the duration with
``asyncio.tasks._leave_task``/``_enter_task``.  ``check()`` verifies they
exist and behave; otherwise the asyncio runner falls back to waking tasks
with ``loop.call_soon``, which asyncio runs in FIFO order.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
from collections.abc import Callable
from contextvars import Context
from typing import Any

problem = "not checked yet"

_enter_task: Callable[[Any, Any], None] | None = getattr(asyncio.tasks, "_enter_task", None)
_leave_task: Callable[[Any, Any], None] | None = getattr(asyncio.tasks, "_leave_task", None)


def check() -> bool:
    """True if the current task can be set aside and restored as ``step`` does."""
    global problem
    if _enter_task is None or _leave_task is None:
        problem = "asyncio.tasks has no _enter_task/_leave_task"
        return False
    # Exercise them on a private loop object: enter, refuse a second entry,
    # leave, and see that current_task follows.
    probe_loop = object()
    probe_task = object()
    try:
        _enter_task(probe_loop, probe_task)
        try:
            if asyncio.current_task(probe_loop) is not probe_task:  # type: ignore[arg-type]
                problem = "asyncio.current_task does not follow _enter_task"
                return False
        finally:
            _leave_task(probe_loop, probe_task)
        if asyncio.current_task(probe_loop) is not None:  # type: ignore[arg-type]
            problem = "asyncio.current_task does not follow _leave_task"
            return False
    except Exception as exc:
        problem = f"_enter_task/_leave_task misbehave: {exc!r}"
        return False
    problem = ""
    return True


_current_tasks: Any = getattr(asyncio.tasks, "_current_tasks", None)


def current_task_getter() -> Callable[[Any], Any]:
    """A fast ``asyncio.current_task(loop)`` (one dict lookup), checked like the rest."""
    tasks = _current_tasks
    if tasks is None or not hasattr(tasks, "get") or _enter_task is None or _leave_task is None:
        return asyncio.current_task
    probe_loop, probe_task = object(), object()
    try:
        _enter_task(probe_loop, probe_task)
        try:
            ok = tasks.get(probe_loop) is probe_task
        finally:
            _leave_task(probe_loop, probe_task)
    except Exception:
        return asyncio.current_task
    return tasks.get if ok else asyncio.current_task


def step(loop: Any, wakeup: Callable[[Any], object], context: Context, park: Any) -> None:
    """Run the task step that ``wakeup`` (its done-callback) starts, right now."""
    assert _enter_task is not None and _leave_task is not None
    current = asyncio.current_task(loop)
    if current is not None:
        _leave_task(loop, current)
    try:
        context.run(wakeup, park)
    finally:
        if current is not None:
            _enter_task(loop, current)

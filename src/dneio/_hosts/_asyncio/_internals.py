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
import sys
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


def current_tasks_dict() -> dict[Any, Any] | None:
    """asyncio's own loop -> current task dict, if setting and deleting in it is
    what ``_enter_task``/``_leave_task`` do (as ``asyncio.current_task`` sees
    it); else None, and the compiled hosting calls those functions instead."""
    tasks = _current_tasks
    if type(tasks) is not dict or current_task_getter() is asyncio.current_task:
        return None
    probe_loop, probe_task = object(), object()
    try:
        tasks[probe_loop] = probe_task
        try:
            ok = asyncio.current_task(probe_loop) is probe_task  # type: ignore[arg-type]
        finally:
            del tasks[probe_loop]
        ok = ok and asyncio.current_task(probe_loop) is None  # type: ignore[arg-type]
    except Exception:
        return None
    return tasks if ok else None


def step(
    loop: Any,
    wakeup: Callable[[Any], object],
    context: Context,
    park: Any,
    current_task: Callable[[Any], Any] = asyncio.current_task,
) -> None:
    """Run the task step that ``wakeup`` (its done-callback) starts, right now.

    ``current_task(loop)`` finds the task running now (the runner passes its
    checked fast getter).
    """
    assert _enter_task is not None and _leave_task is not None
    current = current_task(loop)
    if current is not None:
        _leave_task(loop, current)
    # Resumed from a trio task (a trio guest run inside asyncio): while the
    # asyncio task runs, no trio task is running.
    trio_ctx: Any = _trio_run_context() if "trio._core._run" in sys.modules else None
    trio_task = trio_ctx.__dict__.pop("task", None) if trio_ctx is not None else None
    try:
        context.run(wakeup, park)
    finally:
        if trio_task is not None:
            trio_ctx.task = trio_task
        if current is not None:
            _enter_task(loop, current)


def _trio_run_context() -> Any:
    run = sys.modules.get("trio._core._run")
    return getattr(run, "GLOBAL_RUN_CONTEXT", None) if run is not None else None


# -- hosting native code (see _hosting) ---------------------------------------------
#
# The current task is swapped for the native coroutine's host task while it
# runs, and the idle host tasks are kept out of ``asyncio.all_tasks()`` so
# that the end of ``asyncio.run`` does not wait for them.

_swap: Callable[[Any, Any], Any] | None = getattr(asyncio.tasks, "_swap_current_task", None)
_register_task: Callable[[Any], None] | None = getattr(asyncio.tasks, "_register_task", None)
_unregister_task: Callable[[Any], None] | None = getattr(asyncio.tasks, "_unregister_task", None)

hosting_problem = "not checked yet"


def check_hosting(task: Any) -> bool:
    """True if ``task`` (a fresh task of the running loop) can be hidden and shown again."""
    global hosting_problem
    if _register_task is None or _unregister_task is None or not hasattr(task, "cancelling"):
        hosting_problem = "asyncio.tasks has no _register_task/_unregister_task"
        return False
    loop = task.get_loop()
    try:
        _unregister_task(task)
        hidden = task not in asyncio.all_tasks(loop)
        _register_task(task)
        shown = task in asyncio.all_tasks(loop)
        _unregister_task(task)
    except Exception as exc:
        hosting_problem = f"_register_task/_unregister_task misbehave: {exc!r}"
        return False
    if not (hidden and shown):
        hosting_problem = "asyncio.all_tasks does not follow _register_task/_unregister_task"
        return False
    hosting_problem = ""
    return True


def swap_in(loop: Any, task: Any) -> Any:
    """Make ``task`` the loop's current task; returns the one it replaces (or None)."""
    if _swap is not None:
        return _swap(loop, task)
    assert _enter_task is not None and _leave_task is not None
    prev = asyncio.current_task(loop)
    if prev is not None:
        _leave_task(loop, prev)
    _enter_task(loop, task)
    return prev


def swap_back(loop: Any, task: Any, prev: Any) -> None:
    """Undo ``swap_in(loop, task)``, making ``prev`` current again."""
    if _swap is not None:
        _swap(loop, prev)
        return
    assert _enter_task is not None and _leave_task is not None
    if asyncio.current_task(loop) is task:
        _leave_task(loop, task)
    if prev is not None:
        _enter_task(loop, prev)


def hide(task: Any) -> None:
    """Keep ``task`` out of ``asyncio.all_tasks()`` and quiet if collected pending."""
    assert _unregister_task is not None
    _unregister_task(task)
    task._log_destroy_pending = False


def show(task: Any) -> None:
    """Undo ``hide``: an ordinary task again."""
    assert _register_task is not None
    _register_task(task)
    task._log_destroy_pending = True

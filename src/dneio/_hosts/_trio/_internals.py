"""Synchronous resumption of trio tasks, using trio's private internals.

trio only wakes tasks through its run loop, in batches whose order it
randomises.  To run a parked task *now*, dneio performs one step of it
exactly the way trio's run loop does (the ``while batch:`` body of
``trio._core._run.unrolled_run``), with the task made current for the
duration.  That needs private names, so ``check()`` verifies at first use
that they are present and that the run loop still handles a step the way
this module copies; if anything differs, the trio runner falls back to its
deferred FIFO mode, which uses only public API.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

import outcome

problem = "not checked yet"

_run: Any
CancelShieldedCheckpoint: Any
PermanentlyDetachCoroutineObject: Any
WaitTaskRescheduled: Any
try:
    from trio._core import _run
    from trio._core._traps import (
        CancelShieldedCheckpoint,
        PermanentlyDetachCoroutineObject,
        WaitTaskRescheduled,
    )
except ImportError as exc:  # pragma: no cover - depends on the trio release
    problem = f"cannot import trio's internals: {exc}"
    _run = CancelShieldedCheckpoint = PermanentlyDetachCoroutineObject = None
    WaitTaskRescheduled = None

__all__ = [
    "WaitTaskRescheduled",
    "check",
    "clear_current",
    "current_runner_or_none",
    "current_task_or_none",
    "make_current",
    "park_on",
    "start_now",
    "step",
]

# The statements of trio's run loop that ``step`` reproduces.
_EXPECTED_RUN_LOOP = (
    "GLOBAL_RUN_CONTEXT.task = task",
    "task._next_send_fn = task._next_send = None",
    "msg = task.context.run(next_send_fn, next_send)",
    "runner.task_exited(task, final_outcome)",
    "task._schedule_points += 1",
    "if msg is CancelShieldedCheckpoint:",
    "elif type(msg) is WaitTaskRescheduled:",
    "task._abort_func = msg.abort_func",
    "task._attempt_delivery_of_any_pending_cancel()",
    "elif type(msg) is PermanentlyDetachCoroutineObject:",
    "del GLOBAL_RUN_CONTEXT.task",
)
_EXPECTED_RESCHEDULE = (
    "task._next_send_fn = task.coro.send",
    "task._abort_func = None",
    "task.custom_sleep_data = None",
    "self.runq.append(task)",
)
_EXPECTED_TASK_ATTRS = (
    "_cancel_status",
    "coro",
    "context",
    "_runner",
    "_next_send_fn",
    "_abort_func",
    "custom_sleep_data",
    "_schedule_points",
    "_cancel_points",
    "_attempt_delivery_of_any_pending_cancel",
    "_attempt_delivery_of_pending_ki",
)


def check() -> bool:
    """True if trio's internals are the ones ``step`` was written against."""
    global problem
    if _run is None:
        return False
    try:
        loop_src = inspect.getsource(_run.unrolled_run)
        resched_src = inspect.getsource(_run.Runner.reschedule)
    except Exception as exc:
        problem = f"cannot read trio's run loop: {exc}"
        return False
    for line in _EXPECTED_RUN_LOOP:
        if line not in loop_src:
            problem = f"trio's run loop no longer contains {line!r}"
            return False
    for line in _EXPECTED_RESCHEDULE:
        if line not in resched_src:
            problem = f"trio's reschedule no longer contains {line!r}"
            return False
    fields = {a.name for a in getattr(_run.Task, "__attrs_attrs__", ())} | set(dir(_run.Task))
    for name in _EXPECTED_TASK_ATTRS:
        if name not in fields:
            problem = f"trio's Task has no {name}"
            return False
    runner_fields = {a.name for a in getattr(_run.Runner, "__attrs_attrs__", ())}
    for name in ("runq", "trio_token", "instruments", "ki_pending", "main_task"):
        if name not in runner_fields:
            problem = f"trio's Runner has no {name}"
            return False
    if not hasattr(_run, "GLOBAL_RUN_CONTEXT"):
        problem = "trio has no GLOBAL_RUN_CONTEXT"
        return False
    problem = ""
    return True


_MISSING = object()


def step(task: Any, send: Any) -> None:
    """Run one step of the parked ``task`` now, sending ``send`` into it.

    Mirrors one iteration of trio's run loop for this task, then makes the
    previously current task (if any) current again.
    """
    ctx: Any = _run.GLOBAL_RUN_CONTEXT
    runner: Any = task._runner
    if getattr(ctx, "runner", None) is not task._runner:
        raise RuntimeError(
            f"cannot resume {task!r}: its trio run is over or runs on another thread"
        )
    prev = getattr(ctx, "task", _MISSING)
    # A trio guest run inside asyncio, resumed from an asyncio task: while
    # the trio task runs, no asyncio task is running.
    aio = _asyncio_hidden()
    # What Runner.reschedule does, minus queueing.
    task._abort_func = None
    task.custom_sleep_data = None
    ctx.task = task
    try:
        if "before_task_step" in runner.instruments:
            runner.instruments.call("before_task_step", task)
        final: outcome.Outcome[Any] | None = None
        try:
            msg = task.context.run(task.coro.send, send)
        except StopIteration as stop:
            final = outcome.Value(stop.value)
        except BaseException as exc:
            final = outcome.Error(exc)
        if final is not None:
            runner.task_exited(task, final)
            final = None
        else:
            task._schedule_points += 1
            if msg is CancelShieldedCheckpoint:
                runner.reschedule(task)
            elif type(msg) is WaitTaskRescheduled:
                task._cancel_points += 1
                task._abort_func = msg.abort_func
                if runner.ki_pending and task is runner.main_task:
                    task._attempt_delivery_of_pending_ki()
                task._attempt_delivery_of_any_pending_cancel()
            elif type(msg) is PermanentlyDetachCoroutineObject:
                runner.task_exited(task, msg.final_outcome)
            else:
                foreign = TypeError(
                    f"trio.run received unrecognized yield message {msg!r} from {task!r} "
                    "(it awaited something that is not a trio operation)"
                )
                runner.reschedule(task, foreign)
                task._next_send_fn = task.coro.throw
            del msg
        if "after_task_step" in runner.instruments:
            runner.instruments.call("after_task_step", task)
    finally:
        if prev is _MISSING:
            del ctx.task
        else:
            ctx.task = prev
        if aio is not None:
            _asyncio_shown(aio)


def _asyncio_hidden() -> Any:
    """If an asyncio task is current on this thread, make none current; what to restore."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    from .._asyncio import _internals as _asyncio_internals

    if _asyncio_internals._enter_task is None or _asyncio_internals._leave_task is None:
        return None
    current = asyncio.current_task(loop)
    if current is None:
        return None
    _asyncio_internals._leave_task(loop, current)
    return loop, current


def _asyncio_shown(hidden: Any) -> None:
    from .._asyncio import _internals as _asyncio_internals

    loop, current = hidden
    assert _asyncio_internals._enter_task is not None
    _asyncio_internals._enter_task(loop, current)


# -- hosting native code ---------------------------------------------------------
#
# Native coroutines run on the stack of whatever resumed them.  Under trio,
# the trio operations they await (I/O waits, sleeps, parking lots) register
# ``current_task()`` to be woken later, and they open cancel scopes on it.
# So while native code runs inside a trio run, a parked system task of
# dneio's (the *native host*) is made current instead of the task that
# resumed it.  If the native code then suspends in a trio operation, the
# host simply is the task that operation registered: it adopts the
# coroutine and carries it on, and a fresh host is started for later
# native code.


def start_now(task: Any) -> None:
    """Run the first step of a just-spawned ``task`` right away, instead of from the run queue."""
    task._runner.runq.remove(task)
    task._next_send_fn = task._next_send = None
    step(task, None)


def current_task_or_none() -> Any:
    return _run.GLOBAL_RUN_CONTEXT.__dict__.get("task")


def current_runner_or_none() -> Any:
    return _run.GLOBAL_RUN_CONTEXT.__dict__.get("runner")


def make_current(task: Any) -> None:
    _run.GLOBAL_RUN_CONTEXT.task = task


def clear_current() -> None:
    _run.GLOBAL_RUN_CONTEXT.__dict__.pop("task", None)


def park_on(task: Any, trap: Any) -> bool:
    """Make the parked ``task`` wait on ``trap``, as if it had yielded it itself."""
    if type(trap) is WaitTaskRescheduled:
        task._abort_func = trap.abort_func
        task._cancel_points += 1
        task._attempt_delivery_of_any_pending_cancel()
        return True
    if trap is CancelShieldedCheckpoint:
        task._runner.reschedule(task)
        return True
    return False

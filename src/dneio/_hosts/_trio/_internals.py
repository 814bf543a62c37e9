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
    "after_send",
    "after_task_step",
    "check",
    "clear_current",
    "compiled_step_problem",
    "current_runner_or_none",
    "current_task_or_none",
    "deliver_pending_cancel",
    "ki_pending",
    "make_current",
    "park_on",
    "plain_trap_ok",
    "start_now",
    "step",
    "wake_later",
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
        try:
            msg = task.context.run(task.coro.send, send)
        except StopIteration as stop:
            kind, x = "returned", stop.value
        except BaseException as exc:
            kind, x = "raised", exc
        else:
            kind, x = "yielded", msg
            del msg
        if kind == "yielded" and type(x) is WaitTaskRescheduled and not runner.ki_pending:
            # The common case, inline: the task waits again.
            task._schedule_points += 1
            task._cancel_points += 1
            task._abort_func = x.abort_func
            task._attempt_delivery_of_any_pending_cancel()
        else:
            after_send(task, runner, kind, x)
        del x
        if "after_task_step" in runner.instruments:
            runner.instruments.call("after_task_step", task)
    finally:
        if prev is _MISSING:
            del ctx.task
        else:
            ctx.task = prev
        if aio is not None:
            _asyncio_shown(aio)


def after_send(task: Any, runner: Any, kind: str, x: Any) -> None:
    """What trio's run loop does after a send into ``task``.

    ``kind`` says whether the send ``returned``, ``raised`` or ``yielded`` ``x``.

    The compiled step calls it for every case but the common one (the task
    waits in ``WaitTaskRescheduled`` and has no Ctrl-C to take).
    """
    if kind != "yielded":
        runner.task_exited(task, outcome.Value(x) if kind == "returned" else outcome.Error(x))
        return
    task._schedule_points += 1
    if x is CancelShieldedCheckpoint:
        runner.reschedule(task)
    elif type(x) is WaitTaskRescheduled:
        task._cancel_points += 1
        task._abort_func = x.abort_func
        if runner.ki_pending and task is runner.main_task:
            task._attempt_delivery_of_pending_ki()
        task._attempt_delivery_of_any_pending_cancel()
    elif type(x) is PermanentlyDetachCoroutineObject:
        runner.task_exited(task, x.final_outcome)
    else:
        foreign = TypeError(
            f"trio.run received unrecognized yield message {x!r} from {task!r} "
            "(it awaited something that is not a trio operation)"
        )
        runner.reschedule(task, foreign)
        task._next_send_fn = task.coro.throw


def after_task_step(task: Any, runner: Any) -> None:
    """The compiled step's way to tell an instrument added during the step that it ended."""
    runner.instruments.call("after_task_step", task)


def deliver_pending_cancel(task: Any) -> None:
    """The compiled step's way to call the task's cancel delivery (protected from Ctrl-C)."""
    task._attempt_delivery_of_any_pending_cancel()


# What the compiled step reads without calling: the start of
# _attempt_delivery_of_any_pending_cancel (it does nothing unless the
# task's cancel status is effectively cancelled), and the run context, whose
# fields it reads and writes in the thread's dict.
_EXPECTED_CANCEL_DELIVERY = (
    "if self._abort_func is None:",
    "return",
    "if not self._cancel_status.effectively_cancelled:",
)


def compiled_step_problem() -> str:
    """Why the compiled trio step may not be used here; "" if it may (after ``check()``)."""
    if _run is None:
        return problem or "trio's internals are missing"
    try:
        lines = inspect.getsource(_run.Task._attempt_delivery_of_any_pending_cancel).splitlines()
    except Exception as exc:
        return f"cannot read trio's cancel delivery: {exc}"
    body = [line.strip() for line in lines[1:] if line.strip() and not line.strip().startswith("#")]
    if tuple(body[: len(_EXPECTED_CANCEL_DELIVERY)]) != _EXPECTED_CANCEL_DELIVERY:
        return "trio's cancel delivery does not start as the compiled step expects"
    ctx = _run.GLOBAL_RUN_CONTEXT
    for name in ("task", "runner"):
        if hasattr(type(ctx), name):
            return f"trio's run context has a class attribute {name!r}"
    if not isinstance(getattr(ctx, "__dict__", None), dict):
        return "trio's run context keeps no dict"
    return ""


def plain_trap_ok() -> bool:
    """May the compiled shift make a ``WaitTaskRescheduled`` without calling its class?

    Only if an instance is a plain object whose one field, ``abort_func``,
    is all its ``__init__`` sets (as attrs writes it for trio's frozen
    class); otherwise the class is called.
    """
    cls: Any = WaitTaskRescheduled
    object_new: Any = object.__new__
    if cls is None or type(cls) is not type or cls.__new__ is not object_new:
        return False
    fields = [a.name for a in getattr(cls, "__attrs_attrs__", ())]
    if fields != ["abort_func"] or "__slots__" in vars(cls) or hasattr(cls, "__attrs_post_init__"):
        return False
    try:
        made = cls(abort_func=len)
    except Exception:
        return False
    return bool(vars(made) == {"abort_func": len})


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


def ki_pending(task: Any) -> bool:
    """Is a Ctrl-C waiting for the main task's next checkpoint in ``task``'s run?"""
    return bool(task._runner.ki_pending)


def wake_later(task: Any, send: Any) -> None:
    """Wake the parked ``task`` through trio's run queue, sending it ``send``
    as :func:`step` would have (the loop sends into the task what it is given)."""
    task._runner.reschedule(task, send)


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

"""The interface every host runner implements (trio, asyncio, Twisted), and what they share.

A host runner serves ``shift`` inside the tasks of an event loop.  The
engine (``dneio._core``) knows hosts only through :class:`dneio._core._registry.Host`,
and loads one only once its library has been imported by the program.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from contextvars import Context
from typing import Any


class HostRunner(ABC):
    """What dneio needs from an event loop that runs tasks."""

    # ``synchronous`` is a slot, which the compiled host parts read at its
    # offset on every shift; everything else lives in the instance dict.
    __slots__ = ("__dict__", "synchronous")

    #: The name ``current_runner()`` reports.
    name: str
    #: Why the runner's internals did not pass dneio's check ("" if they did).
    problem: str = ""

    @abstractmethod
    def in_task(self) -> bool:
        """True if one of this runner's tasks is running on this thread now."""

    @abstractmethod
    def is_running(self) -> bool:
        """True if this runner's loop is running on this thread (in a task or not)."""

    @abstractmethod
    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any] | tuple[Any]:
        """Suspend the current task in ``shift(func)``; the body of ``await shift``.

        Returns the generator to run, or ``(value,)`` if ``func`` resumed the
        task with ``value`` before it had to suspend (no generator is made).
        """

    def shift_if_in_task(
        self, func: Callable[[Any], Any]
    ) -> Generator[Any, Any, Any] | tuple[Any] | None:
        """``shift(func)`` if one of this runner's tasks is running here, else None.

        Runners that find their current task at some cost override it to do so once.
        """
        return self.shift(func) if self.in_task() else None

    def task_here(self) -> object | None:
        """What ``shift_for`` needs to know of the task running here; None if there is none.

        Runners that find their current task at some cost override both, so
        that the task is found once per shift.
        """
        return True if self.in_task() else None

    def shift_for(
        self, func: Callable[[Any], Any], found: object
    ) -> Generator[Any, Any, Any] | tuple[Any]:
        """``shift(func)`` in the task that ``task_here()`` found."""
        return self.shift(func)

    @abstractmethod
    def adopt(self, coro: Any, first_yield: Any, context: Context) -> None:
        """Carry on running ``coro``, suspended at ``first_yield``, as a task of this runner.

        The task runs in ``context``: the native coroutine's own.
        """

    #: Whether the private internals synchronous resumption needs passed their check.
    internals_ok: bool = False
    #: Whether parked tasks are resumed synchronously (else deferred, in FIFO order);
    #: each runner sets it when it is made.
    synchronous: bool

    def _start_mode(self, internals_ok: bool, problem: str) -> None:
        self.internals_ok = internals_ok
        self.problem = problem
        forced = os.environ.get(f"DNEIO_{self.name.upper()}_MODE")
        self.synchronous = internals_ok and forced != "deferred"

    def mode(self) -> str:
        """``"synchronous"`` or ``"deferred"``: how this runner resumes parked tasks."""
        return "synchronous" if self.synchronous else "deferred"

    def set_mode(self, mode: str) -> None:
        """Force ``"deferred"``, or return to ``"synchronous"`` where the internals allow."""
        if mode == "synchronous":
            if not self.internals_ok:
                raise RuntimeError(
                    f"{self.name} does not look the way dneio expects ({self.problem}); "
                    "only the deferred mode is available"
                )
            self.synchronous = True
        elif mode == "deferred":
            self.synchronous = False
        else:
            raise ValueError(f"mode must be 'synchronous' or 'deferred', not {mode!r}")

"""The interface between the generic core and a host runner (trio, asyncio).

The core never imports a host library itself: a runner module is loaded only
once its library has been imported by the program, so ``import dneio`` costs
nothing and trio stays optional.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any


class HostRunner(ABC):
    """What dneio needs from an event loop that runs tasks."""

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
    def shift(self, func: Callable[[Any], Any]) -> Generator[Any, Any, Any]:
        """Suspend the current task in ``shift(func)``; the body of ``await shift``."""

    @abstractmethod
    def adopt(self, coro: Any, first_yield: Any) -> None:
        """Carry on running ``coro``, suspended at ``first_yield``, as a task of this runner."""

    #: Whether the private internals synchronous resumption needs passed their check.
    internals_ok: bool = False
    #: Whether parked tasks are resumed synchronously (else deferred, in FIFO order).
    synchronous: bool = False

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


_loaded: dict[str, HostRunner] = {}


def _load(module: str) -> HostRunner:
    runner = _loaded.get(module)
    if runner is None:
        if module == "trio":
            from . import _trio_runner

            runner = _trio_runner.RUNNER
        else:
            from . import _asyncio_runner

            runner = _asyncio_runner.RUNNER
        _loaded[module] = runner
    return runner


def _candidates() -> list[HostRunner]:
    # trio first: a trio guest run inside asyncio is trio's task, not asyncio's.
    modules = sys.modules
    return [_load(m) for m in ("trio", "asyncio") if m in modules]


def task_runner() -> HostRunner | None:
    """The host runner whose task is running on this thread, if any."""
    modules = sys.modules
    if "trio" in modules:
        runner = _loaded.get("trio") or _load("trio")
        if runner.in_task():
            return runner
    if "asyncio" in modules:
        runner = _loaded.get("asyncio") or _load("asyncio")
        if runner.in_task():
            return runner
    return None


def loop_runner() -> HostRunner | None:
    """The host runner whose loop is running on this thread, if any."""
    for runner in _candidates():
        if runner.is_running():
            return runner
    return None


def get_runner(name: str) -> HostRunner:
    """The runner called ``name`` (``"trio"`` or ``"asyncio"``), importing it."""
    if name not in ("trio", "asyncio"):
        raise ValueError(f"unknown runner {name!r}; expected 'trio' or 'asyncio'")
    return _load(name)

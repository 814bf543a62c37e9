"""The interface between the generic core and a host runner (trio, asyncio).

The core never imports a host library itself: a runner module is loaded only
once its library has been imported by the program, so ``import dneio`` costs
nothing and trio stays optional.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any


class HostRunner(ABC):
    """What dneio needs from an event loop that runs tasks."""

    #: The name ``current_runner()`` reports.
    name: str

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

    def mode(self) -> str:
        """``"synchronous"`` or ``"deferred"``: how this runner resumes parked tasks."""
        return "deferred"


def _load(module: str) -> HostRunner:
    if module == "trio":
        from . import _trio_runner

        return _trio_runner.RUNNER
    from . import _asyncio_runner

    return _asyncio_runner.RUNNER


def _candidates() -> Generator[HostRunner, None, None]:
    # trio first: a trio guest run inside asyncio is trio's task, not asyncio's.
    if "trio" in sys.modules:
        yield _load("trio")
    if "asyncio" in sys.modules:
        yield _load("asyncio")


def task_runner() -> HostRunner | None:
    """The host runner whose task is running on this thread, if any."""
    for runner in _candidates():
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

"""Native coroutines inside a host loop: each runs with a host task of its own made current.

A coroutine started with ``reset()`` runs on the stack of whatever resumes
it.  Inside a trio run or an asyncio loop, host operations read the current
task (``trio.lowlevel.current_task()``, ``asyncio.current_task()``) to
register wake-ups and to bind cancel scopes, timeouts and task groups.  If
that were the resumer's task, a timeout opened by the native coroutine would
cancel the resumer.  So while a native coroutine runs inside a host loop, a
parked task of dneio's that belongs to that coroutine (its *host*) is made
current instead; whoever resumes it, it always sees the same one.  If the
coroutine then suspends in a host operation, its host simply carries it on
from there (adoption): the operation registered that very task.

The per-host parts live in ``_trio._runner.NativeHosting`` and
``_asyncio._runner.AsyncioHosting``; this module is the driver's entry hook
(``_driver.set_entry_hook``): it picks the one whose task is actually
running, and stays installed only while some loop needs it.
"""

from __future__ import annotations

import sys
from typing import Any

from .._core import _driver, _registry


class Hosting:
    """The object the native driver calls around each step (``enter``/``leave``)."""

    def __init__(self) -> None:
        self.trio: Any = None  # the trio runner's NativeHosting, while a run uses it
        self.asyncio: Any = None  # the asyncio runner's AsyncioHosting, while a loop uses it
        self._trio_start: Any = None
        self._asyncio_start: Any = None

    # -- switching on and off --------------------------------------------------
    def start_if_running(self) -> None:
        """Called by ``reset()`` while the hook is off: turn it on if a loop runs here."""
        modules = sys.modules
        if "trio" in modules:
            self._start_trio()
        if "asyncio" in modules:
            self._start_asyncio()

    def _start_trio(self) -> None:
        start = self._trio_start
        if start is None:
            start = self._trio_start = _registry.get_runner("trio").hosting.start_if_running  # type: ignore[attr-defined]
        start()

    def _start_asyncio(self) -> None:
        start = self._asyncio_start
        if start is None:
            start = self._asyncio_start = _registry.get_runner("asyncio").hosting.start_if_running  # type: ignore[attr-defined]
        start()

    def update(self) -> None:
        """Install or remove the driver's hook, following the parts that are active."""
        active = self.trio is not None or self.asyncio is not None
        hook = _driver.entry_hook()
        if active and hook is not self:
            _driver.set_entry_hook(self)
        elif not active and hook is self:
            _driver.set_entry_hook(None)

    # -- the hook ----------------------------------------------------------------
    def enter(self, st: Any, coro: Any) -> Any:
        """Make ``coro``'s host current; returns what ``leave`` needs, or None."""
        trio = self.trio
        if trio is not None:
            token = trio.enter_in_task(coro)
            if token is not None:
                return token
        aio = self.asyncio
        if aio is not None:
            token = aio.enter(coro, True)
            if token is not None:
                return token
        # Not in a task of an active part: a part that has not started yet
        # (the hook was installed for the other host), or no task is running
        # (a loop callback, or code outside any loop).
        modules = sys.modules
        if trio is None and "trio" in modules:
            self._start_trio()
            trio = self.trio
            if trio is not None:
                token = trio.enter_in_task(coro)
                if token is not None:
                    return token
        if aio is None and "asyncio" in modules:
            self._start_asyncio()
            aio = self.asyncio
            if aio is not None:
                token = aio.enter(coro, True)
                if token is not None:
                    return token
        if trio is not None:
            token = trio.enter_outside_tasks(coro)
            if token is not None:
                return token
        if aio is not None:
            return aio.enter(coro, False)
        return None

    def leave(self, token: Any) -> None:
        token[0](token)


HOSTING = Hosting()

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
import weakref
from functools import partial
from typing import Any

from .._core import _driver, _registry


class Hosting:
    """The object the native driver calls around each step (``enter``/``leave``)."""

    # Slots: a compiled hook reads trio and asyncio at every step.
    __slots__ = ("_asyncio_start", "_trio_start", "asyncio", "compiled", "trio")

    def __init__(self) -> None:
        self.trio: Any = None  # the trio runner's NativeHosting, while a run uses it
        self.asyncio: Any = None  # the asyncio runner's AsyncioHosting, while a loop uses it
        self._trio_start: Any = None
        self._asyncio_start: Any = None
        # A host's compiled stand-in for this object as the driver's hook
        # (see ``set_compiled``), or None.
        self.compiled: Any = None

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

    def set_compiled(self, hook: Any) -> None:
        """Let ``hook`` stand in for this object as the driver's entry hook.

        A compiled hook runs the common case itself and hands every other
        to :meth:`enter` and :meth:`leave` (None: this object serves alone).
        """
        was = self.compiled if self.compiled is not None else self
        self.compiled = hook
        if _driver.entry_hook() is was:
            _driver.set_entry_hook(None)
        self.update()

    def hook(self) -> Any:
        """What the driver calls while the hosting is on."""
        return self if self.compiled is None else self.compiled

    def update(self) -> None:
        """Install or remove the driver's hook, following the parts that are active."""
        active = self.trio is not None or self.asyncio is not None
        mine = self.hook()
        hook = _driver.entry_hook()
        if active and hook is not mine:
            _driver.set_entry_hook(mine)
        elif not active and hook is mine:
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


class HostRecords:
    """Which host each hosted native coroutine has: what trio's and asyncio's hosting share.

    A host is recorded for a coroutine when it first runs in a loop, and
    watched (a weak reference, which ends the host if the coroutine is
    collected) only once a step leaves the coroutine suspended: most
    coroutines run inside a loop finish in their first step.  A host
    (``_Host`` of either runner) has ``ref`` and ``is_clean()``.
    """

    __slots__ = ("records",)

    def __init__(self) -> None:
        # id(coroutine) -> its host.
        self.records: dict[int, Any] = {}

    # -- provided by each runner's hosting ----------------------------------------------
    def _keep_free(self, host: Any) -> bool:
        """Keep the clean, released ``host`` for the next coroutine; False if there is no room."""
        raise NotImplementedError

    def _quit(self, host: Any) -> None:
        """End ``host`` (its coroutine finished, and it is not kept)."""
        raise NotImplementedError

    def _quit_from_anywhere(self, host: Any) -> None:
        """End ``host`` from its loop (called from a weak reference's callback)."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def _record(self, coro: Any, host: Any) -> Any:
        host.ref = None
        self.records[id(coro)] = host
        return host

    def _forget(self, key: int, host: Any) -> None:
        if self.records.get(key) is host:
            del self.records[key]

    def _after_step(self, coro: Any, host: Any) -> None:
        """A step of ``coro`` in ``host`` ended: release the host, or watch the coroutine."""
        if getattr(coro, "cr_frame", 0) is None:  # the coroutine has finished
            self._release(coro, host)
        elif host.ref is None and self.records.get(id(coro)) is host:
            # Suspended: forget it if it is collected.
            self._watch(coro, host)

    def _watch(self, coro: Any, host: Any) -> None:
        try:
            host.ref = weakref.ref(coro, partial(self._gone, id(coro), host))
        except TypeError:
            host.ref = coro

    def _release(self, coro: Any, host: Any) -> None:
        self._forget(id(coro), host)
        host.ref = None
        if not (host.is_clean() and self._keep_free(host)):
            self._quit(host)

    def _gone(self, key: int, host: Any, ref: Any) -> None:
        # The coroutine was collected while it had a host: end the host.
        self._forget(key, host)
        self._quit_from_anywhere(host)

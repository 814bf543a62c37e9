"""``TrioSystemWaitReadable``: wait for an fd to be readable, watched by a trio system task.

Code run natively by :func:`dneio.reset` (a worker started in a
constructor, say) cannot call trio itself.  It waits with
``await TrioSystemWaitReadable(fd).wait()`` instead: a system task of the
running trio run does the waiting and resumes it.  Each trio run gets its
own system task; waiters left over from an earlier run are served by the
next one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..._core._continuation import AnsweringContinuation
from ..._core._shift import shift
from ..._primitives._waiters import Waiters, wake_all

_NOT_UNDER_TRIO = (
    "TrioSystemWaitReadable.wait() needs a running trio.run() on this thread: a trio "
    "system task does the waiting. Call it from code running inside trio.run(...)."
)


class _Watcher:
    """The system task of one trio run, for one fd."""

    __slots__ = ("idle", "owner")

    def __init__(self, owner: TrioSystemWaitReadable) -> None:
        self.owner = owner
        # The watcher's own continuation while it has nobody to wait for.
        self.idle: AnsweringContinuation[Any, None, Any] | None = None

    def wake(self) -> None:
        k, self.idle = self.idle, None
        if k is not None:
            k.send(None)

    def park(self, k: AnsweringContinuation[Any, None, Any]) -> None:
        if self.owner._waiters:
            k.send(None)
        else:
            self.idle = k

    async def serve(self) -> None:
        import trio

        owner = self.owner
        while True:
            if not owner._waiters:
                await shift(self.park)
            try:
                await trio.lowlevel.wait_readable(owner.fd)
            except trio.Cancelled:
                raise
            except Exception as exc:
                # A bad fd, say: every waiter hears of it.
                wake_all(owner._waiters.pop_all(), exc, is_exc=True)
            else:
                wake_all(owner._waiters.pop_all(), None)


class TrioSystemWaitReadable:
    """Wait until ``fd`` is readable, from any coroutine running inside a trio run.

    :meth:`wait` parks the caller, native coroutine or trio task alike; a
    trio system task (one per trio run, started on first need) waits for
    the fd and resumes every waiter, in order.  A waiting trio task may be
    cancelled as usual.  A native waiter still parked when its trio run
    ends is resumed by the next trio run; register the object with
    :func:`set_trio_system_wait_readable` so that every trio run starts the
    system task as soon as any of its tasks shifts.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._waiters: Waiters[None] = Waiters()
        self._watchers: Any = None  # a trio RunVar, made on first use

    def __repr__(self) -> str:
        return f"<TrioSystemWaitReadable fd={self.fd}>"

    async def wait(self) -> None:
        """Return once the fd is readable."""
        await shift(self.wait_cb)

    def wait_cb(self, k: AnsweringContinuation[Any, None, Any]) -> None:
        """Resume ``k`` once the fd is readable."""
        watcher = self._watcher()
        self._waiters.push(k, None)
        watcher.wake()

    def _watcher(self) -> _Watcher:
        import trio.lowlevel as tl

        if self._watchers is None:
            self._watchers = tl.RunVar(f"dneio-wait-readable-{self.fd}", default=None)
        try:
            watcher: _Watcher | None = self._watchers.get()
        except RuntimeError:
            raise RuntimeError(_NOT_UNDER_TRIO) from None
        if watcher is None:
            watcher = _Watcher(self)
            self._watchers.set(watcher)
            tl.spawn_system_task(watcher.serve, name=f"dneio wait_readable({self.fd})")
        return watcher


_registered: TrioSystemWaitReadable | None = None
_hooked = False


def set_trio_system_wait_readable(obj: TrioSystemWaitReadable | None) -> None:
    """Have every trio run start ``obj``'s system task as soon as one of its tasks shifts.

    Programs (and test suites) call ``trio.run`` many times, and a native
    coroutine parked in ``obj.wait()`` may outlive the run it started in;
    the next run that does anything with dneio serves it.  ``None``
    unregisters.
    """
    global _registered, _hooked
    if obj is not None and not isinstance(obj, TrioSystemWaitReadable):
        raise TypeError(f"expected a TrioSystemWaitReadable or None, not {obj!r}")
    _registered = obj
    if obj is not None and not _hooked:
        _hook_trio_shift()
        _hooked = True


def _hook_trio_shift() -> None:
    # The trio runner has no "first shift of a run" hook, so its ``shift``
    # is wrapped (on the instance) to make sure the watcher is running.
    from ..._core._registry import get_runner

    runner = get_runner("trio")
    original = runner.shift

    def shift_starting_watcher(
        func: Callable[[Any], Any],
    ) -> Generator[Any, Any, Any] | tuple[Any]:
        obj = _registered
        if obj is not None:
            obj._watcher()
        return original(func)

    runner.shift = shift_starting_watcher  # type: ignore[method-assign]

"""Run the same async test on every runner dneio supports.

``Harness`` hides the differences between the native runner, trio, asyncio,
uvloop, anyio (on both of its backends) and Twisted (on its default reactor
and on its asyncio reactor): a test is an async function that
receives the harness, starts concurrent tasks with :meth:`Harness.spawn`,
lets them run until they block with :meth:`Harness.settle`, and cancels them
with :meth:`TaskHandle.cancel`.  The pytest plugin (``dneio.pytest_plugin``)
provides it as the ``dneio_runner`` fixture.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

from ._core._driver import reset

__all__ = ["ALL_RUNNERS", "Harness", "NotFinished", "TaskHandle", "void"]

#: Every runner name, in the order tests are parametrised.
ALL_RUNNERS = (
    "native",
    "trio",
    "asyncio",
    "asyncio-pytask",
    "uvloop",
    "anyio-asyncio",
    "anyio-trio",
    "trio-deferred",
    "asyncio-deferred",
    "twisted",
    "twisted-asyncio",
)

AsyncFn = Callable[..., Awaitable[Any]]


def void(_: object) -> None:
    """Discard a value (to pass a value-returning callable as a None-returning one)."""


class NotFinished(AssertionError):
    """A native run ended with its main coroutine still suspended (a deadlock)."""


class TaskHandle:
    """A task started by :meth:`Harness.spawn`."""

    def __init__(self, harness: Harness) -> None:
        self._harness = harness
        self.done = False
        self.result: Any = None
        self.exception: BaseException | None = None
        self.cancelled = False
        self.observed = False
        self._cancel: Callable[[], None] | None = None

    def cancel(self) -> None:
        """Cancel the task (not possible natively: there is nothing to cancel with)."""
        if self._cancel is None:
            raise RuntimeError(f"tasks cannot be cancelled on the {self._harness.name} runner")
        self._cancel()

    def get(self) -> Any:
        """The task's result; re-raises its exception; fails if it has not finished."""
        if not self.done:
            raise AssertionError("the task has not finished")
        self.observed = True
        if self.exception is not None:
            raise self.exception
        return self.result


class Harness:
    """One runner, driven uniformly."""

    def __init__(self, name: str) -> None:
        if name not in ALL_RUNNERS:
            raise ValueError(f"unknown runner {name!r}; choose from {ALL_RUNNERS}")
        self.name = name
        self.base = name.split("-")[-1] if name.startswith("anyio") else name.split("-")[0]
        if self.base in ("uvloop", "pytask"):
            self.base = "asyncio"
        self.cancellable = name != "native"
        self._spawner: Callable[[AsyncFn, tuple[Any, ...], TaskHandle], None] | None = None
        self._settle: Callable[[], Awaitable[None]] | None = None
        self._handles: list[TaskHandle] = []

    def __repr__(self) -> str:
        return f"<Harness {self.name}>"

    @staticmethod
    def available(name: str) -> str | None:
        """Why ``name`` cannot run here, or None if it can."""
        needs = {
            "trio": "trio",
            "trio-deferred": "trio",
            "uvloop": "uvloop",
            "anyio-asyncio": "anyio",
            "anyio-trio": "anyio",
            "twisted": "twisted",
            "twisted-asyncio": "twisted",
        }.get(name)
        missing = [m for m in (needs, "trio" if name == "anyio-trio" else None) if m]
        for module in missing:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    # -- inside a run ---------------------------------------------------------
    def spawn(self, fn: AsyncFn, *args: Any) -> TaskHandle:
        """Start ``fn(*args)`` as a concurrent task of this runner."""
        if self._spawner is None:
            raise RuntimeError("spawn() works only inside Harness.run()")
        handle = TaskHandle(self)
        self._handles.append(handle)
        self._spawner(fn, args, handle)
        return handle

    async def settle(self) -> None:
        """Let every spawned task run until it blocks (natively: nothing to do)."""
        if self._settle is not None:
            await self._settle()

    # -- running ----------------------------------------------------------------
    def run(self, fn: AsyncFn, *args: Any) -> Any:
        """Run ``fn(self, *args)`` to completion on this runner and return its result."""
        mode_restore = self._force_mode()
        self._handles = []
        try:
            result = getattr(self, "_run_" + self.name.replace("-", "_").split("_deferred")[0])(
                fn, args
            )
        finally:
            mode_restore()
        for handle in self._handles:
            # A spawned task's failure must not pass unnoticed: raise it
            # unless the test looked at it (get()) or it was cancelled.
            if handle.exception is not None and not handle.observed and not handle.cancelled:
                raise handle.exception
        return result

    def _force_mode(self) -> Callable[[], None]:
        if not self.name.endswith("-deferred"):
            return lambda: None
        from ._core._registry import get_runner

        runner = get_runner(self.base)
        before = runner.mode()
        runner.set_mode("deferred")
        return lambda: runner.set_mode(before)

    async def _wrap(self, fn: AsyncFn, args: tuple[Any, ...], handle: TaskHandle) -> None:
        try:
            handle.result = await fn(*args)
        except BaseException as exc:
            handle.exception = exc
            # Cancellation, or (natively) the coroutine being closed because
            # its continuation was dropped.
            if type(exc).__name__ in ("Cancelled", "CancelledError", "GeneratorExit"):
                handle.cancelled = True
                raise
        finally:
            handle.done = True

    def _run_native(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        def spawn(f: AsyncFn, a: tuple[Any, ...], handle: TaskHandle) -> None:
            reset(self._wrap(f, a, handle))

        self._spawner = spawn
        main = TaskHandle(self)
        try:
            reset(self._wrap(fn, (self, *args), main))
        finally:
            self._spawner = None
        if not main.done:
            raise NotFinished("the native main coroutine is still suspended: nothing resumed it")
        return main.get()

    def _run_trio(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        import trio
        import trio.testing

        failed: list[BaseException] = []  # main's error, if it fails

        async def main() -> Any:
            async with trio.open_nursery() as nursery:

                def spawn(f: AsyncFn, a: tuple[Any, ...], handle: TaskHandle) -> None:
                    scope = trio.CancelScope()
                    handle._cancel = scope.cancel

                    async def task() -> None:
                        with scope:
                            await self._wrap(f, a, handle)

                    nursery.start_soon(task)

                self._spawner = spawn
                self._settle = trio.testing.wait_all_tasks_blocked
                try:
                    return await fn(self, *args)
                except Exception as exc:
                    failed.append(exc)
                    nursery.cancel_scope.cancel()  # the spawned tasks, as elsewhere
                finally:
                    self._spawner = self._settle = None
            # Raised as it is, as on the other runners: inside the nursery it
            # would come out wrapped in an ExceptionGroup.
            raise failed[0]

        return trio.run(main)

    def _asyncio_main(
        self, fn: AsyncFn, args: tuple[Any, ...]
    ) -> Callable[[], Coroutine[Any, Any, Any]]:
        import asyncio

        async def main() -> Any:
            tasks: list[asyncio.Task[None]] = []

            def spawn(f: AsyncFn, a: tuple[Any, ...], handle: TaskHandle) -> None:
                t = asyncio.get_running_loop().create_task(self._wrap(f, a, handle))
                handle._cancel = lambda: void(t.cancel())
                tasks.append(t)

            async def settle() -> None:
                for _ in range(20):
                    await asyncio.sleep(0)

            self._spawner, self._settle = spawn, settle
            try:
                result = await fn(self, *args)
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                return result
            finally:
                self._spawner = self._settle = None
                for t in tasks:
                    t.cancel()

        return main

    def _run_asyncio(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        import asyncio

        return asyncio.run(self._asyncio_main(fn, args)())

    def _run_asyncio_pytask(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        """asyncio with its pure-Python Task class instead of the C one."""
        import asyncio
        import asyncio.tasks

        py_task: Any = asyncio.tasks._PyTask  # type: ignore[attr-defined]

        def loop_factory() -> asyncio.AbstractEventLoop:
            loop = asyncio.new_event_loop()
            loop.set_task_factory(lambda loop, coro, **kw: py_task(coro, loop=loop, **kw))
            return loop

        with asyncio.Runner(loop_factory=loop_factory) as r:
            return r.run(self._asyncio_main(fn, args)())

    def _run_uvloop(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        import asyncio

        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(self._asyncio_main(fn, args)())

    def _run_anyio(self, fn: AsyncFn, args: tuple[Any, ...], backend: str) -> Any:
        import anyio

        failed: list[BaseException] = []  # main's error, if it fails

        async def main() -> Any:
            async with anyio.create_task_group() as tg:

                def spawn(f: AsyncFn, a: tuple[Any, ...], handle: TaskHandle) -> None:
                    scope = anyio.CancelScope()
                    handle._cancel = scope.cancel

                    async def task() -> None:
                        with scope:
                            await self._wrap(f, a, handle)

                    tg.start_soon(task)

                async def settle() -> None:
                    for _ in range(20):
                        await anyio.sleep(0)

                self._spawner, self._settle = spawn, settle
                try:
                    return await fn(self, *args)
                except Exception as exc:
                    failed.append(exc)
                    tg.cancel_scope.cancel()  # the spawned tasks, as elsewhere
                finally:
                    self._spawner = self._settle = None
            # Raised as it is, as on the other runners: inside the nursery it
            # would come out wrapped in an ExceptionGroup.
            raise failed[0]

        return anyio.run(main, backend=backend)

    def _run_anyio_asyncio(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        return self._run_anyio(fn, args, "asyncio")

    def _run_anyio_trio(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        return self._run_anyio(fn, args, "trio")

    def _run_twisted(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        """A fresh default reactor, installed for the duration of the run."""
        return self._run_reactor(fn, args, on_asyncio=False)

    def _run_twisted_asyncio(self, fn: AsyncFn, args: tuple[Any, ...]) -> Any:
        """A fresh asyncio reactor (Twisted on an asyncio loop), installed for the run."""
        return self._run_reactor(fn, args, on_asyncio=True)

    def _run_reactor(self, fn: AsyncFn, args: tuple[Any, ...], on_asyncio: bool) -> Any:
        from twisted.internet.defer import Deferred, DeferredList
        from twisted.internet.task import deferLater

        with fresh_reactor(on_asyncio) as reactor:
            outcome: list[Any] = []

            async def main() -> Any:
                tasks: list[Deferred[None]] = []

                def spawn(f: AsyncFn, a: tuple[Any, ...], handle: TaskHandle) -> None:
                    d = Deferred.fromCoroutine(self._wrap(f, a, handle))
                    # The handle keeps the outcome: the Deferred's error is not lost.
                    d.addErrback(void)
                    handle._cancel = d.cancel
                    tasks.append(d)

                async def settle() -> None:
                    for _ in range(20):
                        await deferLater(reactor, 0, lambda: None)

                self._spawner, self._settle = spawn, settle
                try:
                    result = await fn(self, *args)
                    if tasks:
                        await DeferredList(list(tasks))
                    return result
                finally:
                    self._spawner = self._settle = None
                    for d in tasks:
                        d.cancel()

            def start() -> None:
                d = Deferred.fromCoroutine(main())
                d.addBoth(finish)

            def finish(result: Any) -> None:
                outcome.append(result)
                reactor.stop()

            # From the loop itself: the asyncio reactor calls the callWhenRunning
            # functions before it starts its asyncio loop.
            reactor.callWhenRunning(reactor.callLater, 0, start)
            reactor.run(installSignalHandlers=False)
        if not outcome:
            raise NotFinished("the reactor stopped before the main coroutine finished")
        from twisted.python.failure import Failure

        result = outcome[0]
        if isinstance(result, Failure):
            error = result.value
            assert error is not None
            raise error
        return result


@contextlib.contextmanager
def fresh_reactor(on_asyncio: bool = False) -> Iterator[Any]:
    """Install a new Twisted reactor for the duration of the block, then remove it.

    A Twisted reactor runs only once and is installed process-wide, so each
    run gets its own: the default reactor (what ``twisted.internet.reactor``
    would install), or the asyncio reactor on a new asyncio loop.  Whatever
    reactor was installed before is put back afterwards.
    """
    import twisted.internet

    missing = object()
    before = sys.modules.pop("twisted.internet.reactor", None)
    before_attr = twisted.internet.__dict__.pop("reactor", missing)
    loop = None
    try:
        if on_asyncio:
            import asyncio

            from twisted.internet import asyncioreactor

            loop = asyncio.new_event_loop()
            asyncioreactor.install(loop)  # type: ignore[no-untyped-call]
        else:
            from twisted.internet import default

            default.install()
        reactor = sys.modules["twisted.internet.reactor"]
        try:
            yield reactor
        finally:
            _close_reactor(reactor)
    finally:
        if loop is not None:
            loop.close()
        sys.modules.pop("twisted.internet.reactor", None)
        twisted.internet.__dict__.pop("reactor", None)
        if before is not None:
            sys.modules["twisted.internet.reactor"] = before
        if before_attr is not missing:
            twisted.internet.reactor = before_attr


def _close_reactor(reactor: Any) -> None:
    """Close the file descriptors a stopped reactor keeps (its waker, its poller)."""
    for reader in list(getattr(reactor, "_internalReaders", ())):
        with contextlib.suppress(Exception):
            reactor.removeReader(reader)
        with contextlib.suppress(Exception):
            reader.connectionLost(None)
    poller = getattr(reactor, "_poller", None)
    if poller is not None and hasattr(poller, "close"):
        with contextlib.suppress(Exception):
            poller.close()

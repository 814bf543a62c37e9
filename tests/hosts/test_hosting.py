"""Host timeouts, task groups and nurseries opened inside native code apply to that code only.

A native coroutine started with ``reset()`` inside a host task runs with a
host task of its own made current (``_hosting``), whoever resumes it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dneio import reset, shift
from dneio.testing import ALL_RUNNERS, Harness

# trio and asyncio (uvloop, anyio included): the hosts whose tasks native code runs in.
HOSTS = pytest.mark.dneio_runners(
    *(n for n in ALL_RUNNERS if n != "native" and not n.startswith("twisted"))
)


def _current_task(h: Harness) -> Any:
    if h.base == "trio":
        import trio

        return trio.lowlevel.current_task()
    import asyncio

    return asyncio.current_task()


async def _sleep(h: Harness, seconds: float) -> None:
    if h.base == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        import asyncio

        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def _move_on_after(h: Harness, seconds: float, log: list[str]) -> AsyncIterator[None]:
    """The host's own timeout (anyio's cancel scope on the anyio runners); logs if it fired."""
    if h.name.startswith("anyio"):
        import anyio

        with anyio.move_on_after(seconds) as scope:
            yield
        log.append(f"timed out: {scope.cancelled_caught}")
    elif h.base == "trio":
        import trio

        with trio.move_on_after(seconds) as tscope:
            yield
        log.append(f"timed out: {tscope.cancelled_caught}")
    else:
        import asyncio

        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError:
            log.append("timed out: True")
        else:
            log.append("timed out: False")


async def _wait_for(h: Harness, log: list[Any], n: int) -> None:
    for _ in range(1000):
        if len(log) >= n:
            return
        await _sleep(h, 0.002)
    raise AssertionError(f"gave up waiting: {log}")


@HOSTS
def test_timeout_inside_native_code_cancels_only_that_code(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []

        async def native() -> None:
            async with _move_on_after(h, 0.01, log):
                await _sleep(h, 10)

        me = _current_task(h)
        reset(native())
        # The caller's own waits are not cut short by the native timeout.
        await _sleep(h, 0.05)
        assert _current_task(h) is me
        await _wait_for(h, log, 1)
        return log

    assert dneio_runner.run(main) == ["timed out: True"]


@HOSTS
def test_native_code_sees_a_task_of_its_own_whoever_resumes_it(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        seen: list[Any] = []
        box: list[Any] = []

        async def native() -> None:
            seen.append(_current_task(h))
            await shift(box.append)
            seen.append(_current_task(h))
            await shift(box.append)
            seen.append(_current_task(h))

        async def other() -> None:
            seen.append(_current_task(h))
            await shift(box.append)
            seen.append(_current_task(h))

        me = _current_task(h)
        reset(native())
        reset(other())

        async def resumer() -> None:
            box.pop(0).send(None)  # native, from another task

        t = h.spawn(resumer)
        await h.settle()
        t.get()
        box.pop(0).send(None)  # other
        box.pop(0).send(None)  # native again
        return me, seen

    me, seen = dneio_runner.run(main)
    # native: the same task at every step; other: a different one; neither is the caller's.
    assert seen[0] is seen[2] is seen[4]
    assert seen[1] is seen[3]
    assert seen[0] is not seen[1]
    assert me not in seen


@HOSTS
@pytest.mark.parametrize("where", ["before", "after"])
def test_timeouts_around_a_native_shift(dneio_runner: Harness, where: str) -> None:
    """A scope opened before or after a native shift, then resumed from another task."""

    async def main(h: Harness) -> Any:
        log: list[str] = []
        box: list[Any] = []

        async def native() -> None:
            if where == "after":
                log.append(await shift(box.append))
            async with _move_on_after(h, 0.01, log):
                if where == "before":
                    log.append(await shift(box.append))
                await _sleep(h, 10)
            log.append("after the scope")

        reset(native())

        async def resumer() -> None:
            box.pop().send("resumed")

        t = h.spawn(resumer)
        await h.settle()
        t.get()
        await _wait_for(h, log, 3)
        await _sleep(h, 0.02)
        return log

    assert dneio_runner.run(main) == ["resumed", "timed out: True", "after the scope"]


@HOSTS
def test_scopes_of_two_native_coroutines_interleave(dneio_runner: Harness) -> None:
    """Each coroutine's scopes are on its own task, so they may close in any order."""

    async def main(h: Harness) -> Any:
        log: list[str] = []
        box: dict[str, Any] = {}

        async def native(name: str) -> None:
            async with _move_on_after(h, 5, log):
                await shift(lambda k: box.__setitem__(name, k))
            log.append(name)

        reset(native("a"))
        reset(native("b"))
        box["a"].send(None)  # a closes its scope first, though b opened its own later
        box["b"].send(None)
        await _sleep(h, 0)
        return log

    assert dneio_runner.run(main) == ["timed out: False", "a", "timed out: False", "b"]


@HOSTS
def test_timeout_expiring_while_parked_natively_comes_at_the_next_host_operation(
    dneio_runner: Harness,
) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []
        box: list[Any] = []

        async def native(then_sleep: bool) -> None:
            async with _move_on_after(h, 0.01, log):
                log.append(await shift(box.append))
                if then_sleep:
                    await _sleep(h, 10)
                log.append("left the scope")

        # The deadline passes while the coroutine waits in a native shift,
        # which nothing can interrupt: it gets its value...
        reset(native(True))
        await _sleep(h, 0.03)
        box.pop().send("value")
        # ... and the cancellation at its next host operation inside the scope.
        await _wait_for(h, log, 2)
        await _sleep(h, 0.01)
        # Leaving the scope first: nothing is delivered.
        reset(native(False))
        await _sleep(h, 0.03)
        box.pop().send("value")
        await _sleep(h, 0.01)
        return log

    log = dneio_runner.run(main)
    assert log[:2] == ["value", "timed out: True"]
    assert log[2:4] == ["value", "left the scope"]
    # asyncio.timeout and anyio report the expired deadline; trio's
    # move_on_after says whether it caught a cancellation (it did not).
    assert log[4] in ("timed out: True", "timed out: False")
    assert len(log) == 5


@HOSTS
def test_task_groups_and_nurseries_opened_inside_native_code(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []
        box: list[Any] = []

        async def child(name: str) -> None:
            await _sleep(h, 0.001)
            log.append(name)

        async def native() -> None:
            await shift(box.append)  # opened after a shift, from another task
            if h.name.startswith("anyio"):
                import anyio

                async with anyio.create_task_group() as tg:
                    tg.start_soon(child, "one")
                    tg.start_soon(child, "two")
            elif h.base == "trio":
                import trio

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(child, "one")
                    nursery.start_soon(child, "two")
            else:
                import asyncio

                async with asyncio.TaskGroup() as tg:
                    tg.create_task(child("one"))
                    tg.create_task(child("two"))
            log.append("joined")

        reset(native())

        async def resumer() -> None:
            box.pop().send(None)

        h.spawn(resumer)
        await _wait_for(h, log, 3)
        return log

    log = dneio_runner.run(main)
    assert sorted(log[:2]) == ["one", "two"] and log[2] == "joined"


@HOSTS
def test_a_failing_child_cancels_the_native_coroutine_not_the_caller(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> Any:
        log: list[str] = []

        async def failing() -> None:
            await _sleep(h, 0.005)
            raise ValueError("child failed")

        async def native() -> None:
            try:
                if h.name.startswith("anyio"):
                    import anyio

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(failing)
                        await _sleep(h, 10)
                elif h.base == "trio":
                    import trio

                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(failing)
                        await _sleep(h, 10)
                else:
                    import asyncio

                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(failing())
                        await _sleep(h, 10)
            except (BaseExceptionGroup, ValueError) as exc:
                # A group, or the bare error where trio's exception groups are not strict.
                errors = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
                log.append(f"group: {[str(e) for e in errors]}")

        reset(native())
        await _sleep(h, 0.05)
        log.append("caller carried on")
        await _wait_for(h, log, 2)
        return log

    assert sorted(dneio_runner.run(main)) == ["caller carried on", "group: ['child failed']"]


@pytest.mark.dneio_runners(
    "asyncio", "asyncio-pytask", "uvloop", "anyio-asyncio", "asyncio-deferred"
)
def test_asyncio_shield_and_wait_for_inside_native_code(dneio_runner: Harness) -> None:
    import asyncio

    async def main(h: Harness) -> Any:
        log: list[str] = []

        async def inner() -> str:
            await asyncio.sleep(0.02)
            return "shielded result"

        async def native() -> None:
            shielded = asyncio.ensure_future(inner())
            try:
                await asyncio.wait_for(asyncio.shield(shielded), 0.005)
            except TimeoutError:
                log.append("timed out")
            log.append(await shielded)

        reset(native())
        await asyncio.sleep(0.05)
        await _wait_for(h, log, 2)
        return log

    assert dneio_runner.run(main) == ["timed out", "shielded result"]


def _run_plain(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_asyncio_run_ends_cleanly_with_native_coroutines_parked_in_timeouts() -> None:
    """No hang, no "Task was destroyed but it is pending", no host left in all_tasks()."""
    result = _run_plain(
        """
        import asyncio, gc
        from dneio import reset, shift

        ks = []

        async def native():
            async with asyncio.timeout(0.01):
                await shift(ks.append)

        async def main():
            for _ in range(5):
                reset(native())
            await asyncio.sleep(0.03)
            print("tasks", len(asyncio.all_tasks()))

        asyncio.run(main())
        ks.clear()
        gc.collect()
        print("done")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["tasks", "1", "done"]
    assert result.stderr == ""


def test_trio_run_ends_with_native_coroutines_parked_in_cancelled_scopes() -> None:
    pytest.importorskip("trio")
    result = _run_plain(
        """
        import trio
        from dneio import reset, shift

        ks = []

        async def native():
            with trio.move_on_after(0.01):
                await shift(ks.append)

        async def main():
            for _ in range(5):
                reset(native())
            await trio.sleep(0.03)

        trio.run(main)
        print("done")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["done"]


@pytest.mark.dneio_runners("asyncio", "uvloop", "anyio-asyncio")
def test_without_asyncios_private_functions_native_code_runs_in_its_resumers_task(
    dneio_runner: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The public-API fallback: what holds and what does not (docs/guarantees.md)."""
    import asyncio

    from dneio._core._registry import get_runner
    from dneio._hosts._entry import HOSTING

    monkeypatch.setattr(get_runner("asyncio").hosting, "ok", False)  # type: ignore[attr-defined]
    monkeypatch.setattr(HOSTING, "asyncio", None)

    async def main(h: Harness) -> Any:
        seen: list[Any] = []
        box: list[Any] = []

        async def native() -> None:
            seen.append(asyncio.current_task())
            await asyncio.sleep(0)  # adopted: from here on it is a task of its own
            seen.append(asyncio.current_task())
            seen.append(await shift(box.append))

        reset(native())
        await _wait_for(h, box, 1)
        box.pop().send("value")
        return asyncio.current_task(), seen

    me, seen = dneio_runner.run(main)
    # Not hosted: its first steps run in the task that called reset().
    assert seen[0] is me
    assert seen[1] is not me and seen[2] == "value"


def test_the_asyncio_hosting_guard_notices_misbehaving_functions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from dneio._hosts._asyncio import _internals as _asyncio_internals

    async def main() -> tuple[bool, str]:
        probe = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        ok = _asyncio_internals.check_hosting(probe)
        await probe
        return ok, _asyncio_internals.hosting_problem

    monkeypatch.setattr(_asyncio_internals, "_unregister_task", lambda task: None)
    ok, problem = asyncio.run(main())
    assert not ok and "all_tasks" in problem
    monkeypatch.setattr(_asyncio_internals, "_register_task", None)
    ok, problem = asyncio.run(main())
    assert not ok and "_register_task" in problem


# -- the compiled entry hook of the asyncio hosting (_asyncio_c.Hook) ---------------
#
# Where the asyncio part is compiled, a Hook stands in for HOSTING around each
# native step.  It sets the current task in asyncio's own dict where the
# guard (current_tasks_dict) found that this is what _enter_task and
# _leave_task do, else by calling them; without it HOSTING's Python serves.


@pytest.mark.parametrize("way", ["dict", "functions", "python"])
def test_each_way_of_entering_the_host_keeps_native_code_in_its_own_task(
    monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    import asyncio

    from dneio._core import _driver
    from dneio._hosts._asyncio import _internals as _asyncio_internals
    from dneio._hosts._asyncio import _runner
    from dneio._hosts._entry import HOSTING

    if _runner._asyncio_c is None:
        pytest.skip("the asyncio part is not compiled here (pure-Python path)")
    if way == "functions":
        monkeypatch.setattr(_asyncio_internals, "current_tasks_dict", lambda: None)
    try:
        _runner._setup_compiled()
        if way == "python":
            HOSTING.set_compiled(None)

        async def main() -> tuple[Any, list[Any], list[Any], Any]:
            seen: list[Any] = []
            after: list[Any] = []
            box: list[Any] = []

            async def native() -> None:
                for _ in range(3):
                    seen.append(asyncio.current_task())
                    await shift(box.append)
                seen.append(asyncio.current_task())

            me = asyncio.current_task()
            reset(native())
            after.append(asyncio.current_task())

            async def resumer() -> Any:
                box.pop().send(None)
                after.append(asyncio.current_task())
                return asyncio.current_task()

            other = await asyncio.get_running_loop().create_task(resumer())
            box.pop().send(None)
            after.append(asyncio.current_task())
            box.pop().send(None)
            after.append(asyncio.current_task())
            hook = (_driver.entry_hook(), HOSTING.compiled)
            return me, seen, after + [other], hook

        me, seen, after, hook = asyncio.run(main())
    finally:
        monkeypatch.undo()
        _runner._setup_compiled()
    assert len(set(map(id, seen))) == 1 and seen[0] is not None  # its own host, every step
    assert me not in seen
    # Each resumer is its own current task again once the step is over.
    assert after[0] is me and after[1] is after[4] and after[2] is me and after[3] is me
    installed, compiled = hook
    if way == "python":
        assert installed is HOSTING and compiled is None
    else:
        assert type(installed).__name__ == "Hook" and installed is compiled
    assert _driver.entry_hook() in (None, HOSTING.compiled)


def test_the_current_tasks_guard_refuses_a_dict_asyncio_does_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dneio._hosts._asyncio import _internals as _asyncio_internals

    real = _asyncio_internals.current_tasks_dict()
    if real is None:
        pytest.skip("this asyncio keeps no current-task dict")
    monkeypatch.setattr(_asyncio_internals, "_current_tasks", {})
    assert _asyncio_internals.current_tasks_dict() is None
    monkeypatch.setattr(_asyncio_internals, "_current_tasks", None)
    assert _asyncio_internals.current_tasks_dict() is None


# -- free hosts: a finished coroutine's host serves the next one, if it is clean ---------
#
# Where the asyncio part is compiled, the hook takes a free host and releases
# a finished coroutine's host in C (AsyncioHosting._host_for and _release
# are the reference, and serve when the hook is handed back to Python).


@pytest.fixture(params=["compiled", "python"])
def asyncio_hook(request: pytest.FixtureRequest) -> Any:
    from dneio._hosts._asyncio import _runner
    from dneio._hosts._entry import HOSTING

    if request.param == "compiled" and _runner._asyncio_c is None:
        pytest.skip("the asyncio part is not compiled here (pure-Python path)")
    if request.param == "python":
        HOSTING.set_compiled(None)
    try:
        yield request.param
    finally:
        _runner._setup_compiled()


def test_finished_coroutines_hand_their_clean_host_on(asyncio_hook: str) -> None:
    import asyncio

    from dneio._hosts._asyncio._runner import _FREE_HOSTS, RUNNER

    async def main() -> tuple[list[Any], list[Any], int, list[bool]]:
        one_by_one: list[Any] = []

        async def native(seen: list[Any]) -> None:
            seen.append(asyncio.current_task())

        for _ in range(5):
            reset(native(one_by_one))
        # Many at once: each parked coroutine keeps its own host.
        box: list[Any] = []
        at_once: list[Any] = []

        async def parked() -> None:
            at_once.append(asyncio.current_task())
            await shift(box.append)

        for _ in range(3 * _FREE_HOSTS):
            reset(parked())
        for k in box:
            k.send(None)
        loop = asyncio.get_running_loop()
        free = RUNNER.hosting.free[id(loop)]
        kept = len(free)
        await asyncio.sleep(0)
        # The hosts not kept were told to finish; the kept ones wait.
        done = [task.done() for task in set(at_once) - {h.task for h in free}]
        return one_by_one, at_once, kept, done

    one_by_one, at_once, kept, done = asyncio.run(main())
    assert len(set(one_by_one)) == 1  # the same host, five times
    assert len(set(at_once)) == 3 * _FREE_HOSTS
    assert kept == _FREE_HOSTS
    assert done and all(done)


def test_closed_loops_and_their_free_hosts_are_let_go(asyncio_hook: str) -> None:
    """Each ``asyncio.run`` whose tasks ran native code leaves nothing of its
    loop behind once the next loop hosts native code: the loop, its free
    hosts and their tasks can all be collected."""
    import asyncio
    import gc
    import weakref

    from dneio import RequestQueue, make_n_in_parallel
    from dneio._hosts._asyncio._runner import RUNNER

    loops: list[weakref.ref[Any]] = []
    hosts: list[weakref.ref[Any]] = []
    # Servers parked for good, still held (an object that started a native
    # worker in its constructor): their hosts belong to closed loops.
    servers: list[Any] = []

    async def child() -> int:
        await asyncio.sleep(0)
        return 1

    async def main() -> int:
        loop = asyncio.get_running_loop()
        loops.append(weakref.ref(loop))
        queue = RequestQueue()

        async def server() -> None:
            while True:
                value, k = await queue.get_one()
                k.send(value + 1)
                # (A spent continuation still holds its task's slot, and so
                # the task and its loop: not kept here past the reply.)
                del k

        reset(server())  # parked for good once this run ends
        servers.append(queue)
        total = sum(await make_n_in_parallel(child, 5))
        total += await queue.request(1)

        async def native() -> None:
            pass

        for _ in range(3):
            reset(native())  # its host is kept free for the next one
        hosts.extend(weakref.ref(h.task) for h in RUNNER.hosting.free.get(id(loop), []))
        return total

    async def outside() -> None:
        pass

    for i in range(12):
        assert asyncio.run(main()) == 7
        if i % 2:
            reset(outside())  # native code with no loop running, between runs
    # A server parked in an earlier run serves again in a new loop.
    async def again() -> int:
        result: int = await servers[0].request(41)
        return result

    assert asyncio.run(again()) == 42
    assert asyncio.run(main()) == 7
    for _ in range(3):  # cycles through finalisers take more than one pass
        gc.collect()
    assert hosts, "no free host was kept: the check below would prove nothing"
    alive = [i for i, ref in enumerate(loops) if ref() is not None]
    # Only the last loop is still known (until the next one hosts native code).
    assert alive in ([], [len(loops) - 1]), alive
    assert len(RUNNER.hosting.loops) <= 1
    assert sum(ref() is not None for ref in hosts) <= len(hosts) // 12


def test_a_host_left_cancelling_is_not_handed_on(asyncio_hook: str) -> None:
    import asyncio

    async def main() -> tuple[Any, Any, Any, bool]:
        hosts: list[Any] = []

        async def cancels_its_host() -> None:
            hosts.append(asyncio.current_task())
            asyncio.current_task().cancel()  # delivered at its next await: there is none

        async def plain() -> None:
            hosts.append(asyncio.current_task())

        reset(plain())
        reset(cancels_its_host())  # the same clean host as plain()
        reset(plain())  # not that one: it is left cancelling
        await asyncio.sleep(0)
        return hosts[0], hosts[1], hosts[2], hosts[1].done()

    first, cancelling, third, ended = asyncio.run(main())
    assert first is cancelling
    assert third is not cancelling
    assert ended


def test_an_error_checking_a_free_host_is_raised_and_an_odd_free_list_is_handled(
    asyncio_hook: str,
) -> None:
    import asyncio
    import collections

    from dneio._hosts._asyncio import _runner
    from dneio._hosts._asyncio._runner import RUNNER

    class Broken:
        def cancelling(self) -> int:
            raise ValueError("cannot tell")

    async def main() -> tuple[str, list[Any]]:
        seen: list[Any] = []

        async def native() -> None:
            seen.append(asyncio.current_task())

        reset(native())  # its host is kept free
        loop = asyncio.get_running_loop()
        [host] = RUNNER.hosting.free[id(loop)]
        real, host.task = host.task, Broken()
        refused = native()
        try:
            reset(refused)
        except ValueError as exc:
            raised = str(exc)
            refused.close()  # it never ran
        finally:
            host.task = real
            _runner._quit(host)
        # A free list that is not a list: the reference copes, and so must
        # the compiled release.
        RUNNER.hosting.free[id(loop)] = collections.deque()  # type: ignore[assignment]
        reset(native())
        reset(native())
        await asyncio.sleep(0)
        return raised, seen

    raised, seen = asyncio.run(main())
    assert raised == "cannot tell"
    assert len(seen) == 3

"""The trio runner's compiled part (``_trio_c``) and the Python it hands over to.

Where the core is compiled, a trio task's ``shift``, the synchronous
wake-up of a parked task (one step of it, the way trio's run loop takes
one) and the entry into a native coroutine's host run in C, and every
unusual case goes to the Python reference.  Each test here runs on both:
``path`` is ``compiled`` (skipped where nothing is compiled) or ``python``
(the reference, with the compiled part handed back).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from dneio import reset, shift

pytest.importorskip("trio")
import trio
import trio.lowlevel as tl
import trio.testing

from dneio._hosts._trio import _internals as _trio_internals
from dneio._hosts._trio import _runner


@pytest.fixture(params=["compiled", "python"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "compiled" and _runner._trio_c is None:
        pytest.skip("the trio part is not compiled here (pure-Python path)")
    if not _runner.RUNNER.synchronous:
        pytest.skip("trio runs in the deferred mode here")
    problem = _runner._setup_compiled(request.param == "compiled")
    if request.param == "compiled":
        assert problem == "", problem
    try:
        yield request.param
    finally:
        _runner._setup_compiled()


def _is_compiled(fn: Any) -> bool:
    return type(fn).__name__ in ("builtin_function_or_method", "method_descriptor")


def test_which_path_serves(path: str) -> None:
    from dneio._hosts._trio._runner import RUNNER, NativeHosting

    async def main() -> Any:
        box: list[Any] = []

        async def parked() -> Any:
            return await shift(box.append)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked)
            await trio.testing.wait_all_tasks_blocked()
            k = box.pop()
            kind = type(k._s).__name__
            k.send("v")
        return kind

    assert trio.run(main) == "TrioSlot"
    compiled = path == "compiled"
    assert _is_compiled(RUNNER.shift_if_in_task) is compiled
    assert _is_compiled(NativeHosting.enter_in_task) is compiled
    for name in ("send", "throw", "__call__", "_resume_unless_cancelled"):
        assert _is_compiled(_runner.TrioContinuation.__dict__[name]) is compiled


def test_continuations_take_keywords_as_the_python_methods_do(path: str) -> None:
    async def main() -> list[Any]:
        log: list[Any] = []
        log.append(await shift(lambda k: k.send(value="early")))
        log.append(
            await shift(lambda k: log.append(k._resume_unless_cancelled(is_exc=False, value=2)))
        )
        box: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def parked() -> None:
                log.append(await shift(box.append))
                try:
                    await shift(box.append)
                except KeyError as exc:
                    log.append(repr(exc))

            nursery.start_soon(parked)
            await trio.testing.wait_all_tasks_blocked()
            box.pop().send(value="parked")
            box.pop().throw(exc=KeyError("thrown"))
        return log

    assert trio.run(main) == ["early", (True, None), 2, "parked", "KeyError('thrown')"]


def test_resumed_inside_func_each_way(path: str) -> None:
    """Inside func, on the task's thread, a resumption only stores the
    outcome (compiled where it can be); every other call goes to Python."""

    async def main() -> list[Any]:
        log: list[Any] = []
        log.append(await shift(lambda k: k.send("sent")))
        log.append(await shift(lambda k: k("called")))
        log.append(await shift(lambda k: log.append(k._resume_unless_cancelled(False, "atomic"))))
        try:
            await shift(lambda k: k.throw(ValueError("thrown")))
        except ValueError as exc:
            log.append(str(exc))

        def twice(k: Any) -> None:
            k.send(1)
            try:
                k.send(2)
            except RuntimeError:
                log.append("second refused")

        log.append(await shift(twice))

        def bad(k: Any) -> None:
            calls = (lambda: k.throw("not an exception"), lambda: k.send(), lambda: k.send(1, 2))
            for call in calls:
                try:
                    call()
                except TypeError:
                    log.append("TypeError")
            k.send("after")

        log.append(await shift(bad))
        return log

    assert trio.run(main) == [
        "sent",
        "called",
        (True, None),
        "atomic",
        "thrown",
        "second refused",
        1,
        "TypeError",
        "TypeError",
        "TypeError",
        "after",
    ]


def _park_and_wake(after_wake: Any) -> tuple[list[Any], list[Any]]:
    """A task parks in shift; the main task wakes it with k.send and notes
    what the log held when send returned, and at the end."""
    log: list[Any] = []
    at_send: list[Any] = []

    async def main() -> None:
        box: list[Any] = []

        async def parked() -> None:
            log.append(("got", await shift(box.append)))
            await after_wake(log)
            log.append("end")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked, name="parked")
            await trio.testing.wait_all_tasks_blocked()
            box.pop().send(1)
            at_send.extend(log)

    trio.run(main)
    return at_send, log


def test_instruments_see_the_step_of_a_woken_task(path: str) -> None:
    seen: list[str] = []

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: Any) -> None:
            if task.name == "parked":
                seen.append("before")

        def after_task_step(self, task: Any) -> None:
            if task.name == "parked":
                seen.append("after")

    async def then(log: list[Any]) -> None:
        seen.append("ran")
        await trio.sleep(0)

    log: list[Any] = []

    async def main() -> list[str]:
        box: list[Any] = []

        async def parked() -> None:
            log.append(await shift(box.append))
            await then(log)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked, name="parked")
            await trio.testing.wait_all_tasks_blocked()
            tl.add_instrument(Steps())
            del seen[:]
            box.pop().send(1)
            return list(seen)

    at_send = trio.run(main)
    # The step ran inside send(), and the instrument saw it begin and end.
    assert at_send == ["before", "ran", "after"]
    assert log == [1]


def test_a_woken_task_waiting_in_a_cancelled_scope_is_cancelled(path: str) -> None:
    aborted: list[Any] = []

    async def then(log: list[Any]) -> None:
        def abort(raise_cancel: Any) -> Any:
            aborted.append(True)
            return tl.Abort.SUCCEEDED

        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await tl.wait_task_rescheduled(abort)
            except trio.Cancelled:
                log.append("cancelled")
                raise
        log.append("scope left")

    at_send, log = _park_and_wake(then)
    # The pending cancellation was delivered in the step's bookkeeping:
    # before send returned, trio asked the wait to abort.
    assert at_send == [("got", 1)]
    assert aborted == [True]
    assert log == [("got", 1), "cancelled", "scope left", "end"]


def test_a_woken_task_that_awaits_something_not_trio_gets_trios_error(path: str) -> None:
    class Foreign:
        def __await__(self) -> Any:
            yield "not a trio operation"

    async def then(log: list[Any]) -> None:
        try:
            await Foreign()
        except TypeError as exc:
            log.append(str(exc).split(" from ")[0])

    _, log = _park_and_wake(then)
    assert log == [
        ("got", 1),
        "trio.run received unrecognized yield message 'not a trio operation'",
        "end",
    ]


def test_a_woken_task_at_a_cancel_shielded_checkpoint_goes_on_later(path: str) -> None:
    async def then(log: list[Any]) -> None:
        log.append("checkpoint")
        await tl.cancel_shielded_checkpoint()
        log.append("after")

    at_send, log = _park_and_wake(then)
    assert at_send == [("got", 1), "checkpoint"]
    assert log == [("got", 1), "checkpoint", "after", "end"]


def test_a_woken_task_that_finishes_or_raises_in_its_step(path: str) -> None:
    async def nothing(log: list[Any]) -> None:
        pass

    at_send, log = _park_and_wake(nothing)
    assert at_send == log == [("got", 1), "end"]

    async def fail(log: list[Any]) -> None:
        raise ValueError("from the woken task")

    with pytest.raises(BaseException) as info:
        _park_and_wake(fail)
    group = info.value
    errors = group.exceptions if isinstance(group, BaseExceptionGroup) else (group,)
    assert [str(e) for e in errors] == ["from the woken task"]


def test_a_parked_task_is_cancelled_through_its_wait(path: str) -> None:
    async def main() -> tuple[list[Any], Any]:
        box: list[Any] = []
        log: list[Any] = []

        async def parked() -> None:
            with trio.CancelScope() as scope:
                box.append(scope)
                log.append(await shift(box.append))
            log.append("cancelled" if scope.cancelled_caught else "not cancelled")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(parked)
            await trio.testing.wait_all_tasks_blocked()
            scope, k = box
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            # Resuming a cancelled task is a no-op; nothing is delivered twice.
            k.send("late")
        return log, k.is_cancelled()

    log, cancelled = trio.run(main)
    assert log == ["cancelled"] and cancelled


# -- the guards ------------------------------------------------------------------------


def test_the_trap_guard_refuses_a_wait_class_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _trio_internals.plain_trap_ok()

    class Slotted:
        __slots__ = ("abort_func",)
        __attrs_attrs__ = ()

        def __init__(self, abort_func: Any) -> None:
            self.abort_func = abort_func

    monkeypatch.setattr(_trio_internals, "WaitTaskRescheduled", Slotted)
    assert not _trio_internals.plain_trap_ok()

    class TwoFields:
        def __init__(self, abort_func: Any) -> None:
            self.abort_func = abort_func
            self.more = None

    TwoFields.__attrs_attrs__ = _trio_internals._run.WaitTaskRescheduled.__attrs_attrs__  # type: ignore[attr-defined]
    monkeypatch.setattr(_trio_internals, "WaitTaskRescheduled", TwoFields)
    assert not _trio_internals.plain_trap_ok()


def test_without_the_plain_trap_the_class_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    if _runner._trio_c is None:
        pytest.skip("the trio part is not compiled here (pure-Python path)")
    made: list[Any] = []
    real = _trio_internals.WaitTaskRescheduled

    # The run loop tells the wait by its exact class: count the calls of it.
    real_init = real.__init__

    def counting_init(self: Any, abort_func: Any) -> None:
        made.append(abort_func)
        real_init(self, abort_func)

    monkeypatch.setattr(real, "__init__", counting_init)
    monkeypatch.setattr(_trio_internals, "plain_trap_ok", lambda: False)
    try:
        assert _runner._setup_compiled() == ""
        _, log = _park_and_wake(lambda log: trio.sleep(0))
    finally:
        monkeypatch.undo()
        _runner._setup_compiled()
    assert log == [("got", 1), "end"]
    # The parked task's wait was made by calling the class.
    assert any(type(getattr(a, "__self__", None)).__name__ == "TrioSlot" for a in made)


def test_the_compiled_step_guard_hands_a_changed_trio_to_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        _trio_internals,
        "_EXPECTED_CANCEL_DELIVERY",
        (*_trio_internals._EXPECTED_CANCEL_DELIVERY, "a line no trio release has"),
    )
    assert "cancel delivery" in _trio_internals.compiled_step_problem()
    try:
        problem = _runner._setup_compiled()
        assert "cancel delivery" in problem or "not built" in problem
        assert not _is_compiled(_runner.RUNNER.shift_if_in_task)
        at_send, log = _park_and_wake(lambda log: trio.sleep(0))
        assert at_send == [("got", 1)]
        assert log == [("got", 1), "end"]
    finally:
        monkeypatch.undo()
        _runner._setup_compiled()


# -- native code inside trio tasks: the compiled entry hook ------------------------------


@pytest.mark.parametrize("hook", ["trio", "asyncio", "python"])
def test_each_hook_keeps_native_code_in_its_own_trio_task(path: str, hook: str) -> None:
    from dneio._core import _driver
    from dneio._hosts._asyncio import _runner as _asyncio_runner
    from dneio._hosts._entry import HOSTING

    if hook != "python" and path == "python":
        pytest.skip("only the Python hook serves the Python path")
    if hook == "asyncio" and _asyncio_runner._asyncio_c is None:
        pytest.skip("the asyncio part is not compiled here")
    HOSTING.set_compiled(None)
    try:
        if hook == "trio":
            _runner._setup_compiled()
        elif hook == "asyncio":
            _asyncio_runner._setup_compiled()

        async def main() -> tuple[Any, list[Any], list[Any], Any]:
            seen: list[Any] = []
            after: list[Any] = []
            box: list[Any] = []

            async def native() -> None:
                for _ in range(3):
                    seen.append(tl.current_task())
                    await shift(box.append)
                seen.append(tl.current_task())

            me = tl.current_task()
            reset(native())
            after.append(tl.current_task())
            async with trio.open_nursery() as nursery:

                async def resumer() -> None:
                    box.pop().send(None)
                    after.append(tl.current_task())

                nursery.start_soon(resumer)
            box.pop().send(None)
            after.append(tl.current_task())
            box.pop().send(None)
            after.append(tl.current_task())
            return me, seen, after, _driver.entry_hook()

        me, seen, after, installed = trio.run(main)
    finally:
        HOSTING.set_compiled(None)
        _asyncio_runner._setup_compiled()
        _runner._setup_compiled()
    assert len(set(map(id, seen))) == 1 and seen[0] is not None  # its own host, every step
    assert me not in seen
    assert after[0] is me and after[1] is not me and after[2] is me and after[3] is me
    if hook == "python":
        assert installed is HOSTING
    else:
        assert type(installed).__module__.endswith(f"_{hook}_c")


# -- what a review found ----------------------------------------------------------------


def test_the_first_task_of_a_run_parks_before_trio_has_made_its_token(path: str) -> None:
    """trio makes a run's token only when asked: the first shift of a fresh
    run must still leave a continuation that can be resumed from another
    thread, or dropped."""
    from dneio import ContinuationDropped

    def from_a_thread() -> Any:
        async def main() -> Any:
            box: list[Any] = []
            async with trio.open_nursery() as nursery:

                async def parked() -> None:
                    box.append(await shift(box.append))

                nursery.start_soon(parked)
                await trio.testing.wait_all_tasks_blocked()
                k = box.pop()
                thread = threading.Thread(target=k.send, args=("from a thread",))
                thread.start()
                await trio.to_thread.run_sync(thread.join)
            return box

        return trio.run(main)

    def dropped() -> Any:
        async def main() -> Any:
            got: list[Any] = []
            try:
                await shift(lambda k: None)
            except ContinuationDropped:
                got.append("dropped")
            return got

        return trio.run(main)

    assert from_a_thread() == ["from a thread"]
    assert dropped() == ["dropped"]


def test_an_instrument_added_during_a_step_sees_it_end(path: str) -> None:
    seen: list[str] = []

    class After(trio.abc.Instrument):
        def after_task_step(self, task: Any) -> None:
            if task.name == "parked":
                seen.append("after")

    async def then(log: list[Any]) -> None:
        tl.add_instrument(After())
        seen.append("ran")
        await trio.sleep(0)

    _park_and_wake(then)
    assert seen[:2] == ["ran", "after"]


def test_the_python_trio_hosting_stays_protected_under_the_asyncio_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the asyncio hook is compiled but trio's hosting is the Python
    one, entering the host from a trio task goes through the protected
    Python hook, as without the compiled one."""
    from dneio._hosts._asyncio import _runner as _asyncio_runner

    if _asyncio_runner._asyncio_c is None:
        pytest.skip("the asyncio part is not compiled here")
    protected: list[bool] = []
    real = _trio_internals.make_current

    def recording(task: Any) -> None:
        protected.append(tl.currently_ki_protected())
        real(task)

    monkeypatch.setattr(_trio_internals, "make_current", recording)
    try:
        _runner._setup_compiled(False)
        _asyncio_runner._setup_compiled()

        async def main() -> None:
            async def native() -> None:
                await trio.sleep(0)

            reset(native())

        trio.run(main)
    finally:
        monkeypatch.undo()
        _runner._setup_compiled()
    assert protected and all(protected)


# -- the reads by offset, and the run context of each thread ------------------------------


def _request_from_trio(n: int) -> tuple[int, set[Any], Any]:
    """trio.run: a native server, and n requests to it from the main task;
    the sum of the replies, the root tasks seen by the server, this run's."""
    from dneio import RequestQueue

    async def main() -> tuple[int, set[Any], Any]:
        queue = RequestQueue()
        roots: set[Any] = set()

        async def server() -> None:
            while True:
                value, k = await queue.get_one()
                roots.add(tl.current_root_task())
                k.send(value)

        reset(server())
        total = 0
        for i in range(n):
            total += await queue.request(i)
            if i % 50 == 0:
                await trio.sleep(0)
        return total, roots, tl.current_root_task()

    return trio.run(main)


def test_the_attributes_read_at_their_offsets_follow_their_classes(
    path: str, slot_as_property: Callable[[type, str], AbstractContextManager[list[int]]]
) -> None:
    """Where the compiled part reads a plain slot of trio's task and runner
    and of the hosting's records at its offset, a change to the class
    sends the read back to the attribute look-up."""
    if path == "python":
        pytest.skip("only the compiled part reads at offsets")
    assert _runner._trio_c is not None
    reads = _runner._trio_c.slot_reads()
    assert set(reads) == {"Task._runner", "Runner.trio_token", "_Host.run", "_Host.ended",
                          "_Host.task", "_Host.ref", "_Run.runner", "Hosting.trio",
                          "NativeHosting.records", "TrioRunner.synchronous"}
    assert _request_from_trio(200)[0] == sum(range(200))
    with slot_as_property(_runner._Run, "runner") as looked_up:
        assert "_Run.runner" not in _runner._trio_c.slot_reads()
        total, roots, root = _request_from_trio(200)
    assert total == sum(range(200)) and roots == {root}
    assert len(looked_up) >= 200  # every entry into the server's host asked the property
    # The slot is back: read at its offset again, with no new set-up.
    assert set(_runner._trio_c.slot_reads()) == set(reads)
    assert _request_from_trio(200)[0] == sum(range(200))


def test_trio_runs_on_two_threads_at_once_each_host_their_own(
    path: str, run_switching_often: Callable[[list[threading.Thread]], None]
) -> None:
    """Each thread's run context is its own: native code entered from a trio
    task on one thread never sees the other thread's run, with the
    interpreter switching threads as often as it can."""
    results: dict[int, tuple[int, set[Any], Any]] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = _request_from_trio(2000)
        except BaseException as e:  # reported below
            errors.append(e)

    run_switching_often([threading.Thread(target=one, args=(i,)) for i in range(3)])
    assert not errors, errors
    assert len(results) == 3
    for total, roots, root in results.values():
        assert total == sum(range(2000))
        assert roots == {root}
    assert len({id(root) for _, _, root in results.values()}) == 3


def test_asyncio_and_trio_on_two_threads_each_shift_served_by_its_own_host(
    path: str, run_switching_often: Callable[[list[threading.Thread]], None]
) -> None:
    """trio's run context is looked up per thread (its dict is cached with
    the thread's state): an asyncio task's shift on one thread is never
    taken for a trio task's while trio runs tasks on another, and the
    other way round, with the interpreter switching threads as often as it
    can and each thread alternating at-once and later resumptions."""
    import asyncio

    n = 3000
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    async def on_asyncio() -> int:
        loop = asyncio.get_running_loop()
        total = 0
        for i in range(n):
            if i % 2:
                total += await shift(lambda k, i=i: k(i))
            else:
                total += await shift(lambda k, i=i: loop.call_soon(k, i))
            assert asyncio.current_task() is not None
        return total

    async def on_trio() -> int:
        total = 0
        async with trio.open_nursery() as nursery:
            for i in range(n):
                if i % 2:
                    total += await shift(lambda k, i=i: k(i))
                else:
                    total += await shift(lambda k, i=i: nursery.start_soon(_send_later, k, i))
                assert tl.current_task() is not None
        return total

    def one(name: str) -> None:
        try:
            if name == "asyncio":
                results[name] = asyncio.run(on_asyncio())
            else:
                results[name] = trio.run(on_trio)
        except BaseException as e:  # reported below
            errors.append(e)

    run_switching_often(
        [threading.Thread(target=one, args=(name,)) for name in ("asyncio", "trio", "trio")]
    )
    assert not errors, errors
    assert results == {"asyncio": sum(range(n)), "trio": sum(range(n))}


async def _send_later(k: Any, value: int) -> None:
    k.send(value)

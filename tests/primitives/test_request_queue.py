"""RequestQueue: order, replies, get_many/fetch_any, close, and cancellation on every runner."""

from __future__ import annotations

from typing import Any

import pytest

from dneio import (
    ClosedError,
    Continuation,
    RequestCancelledError,
    RequestQueue,
    reset,
    shift,
)
from dneio.testing import Harness


def needs_cancellation(dneio_runner: Harness) -> None:
    if not dneio_runner.cancellable:
        pytest.skip("native coroutines cannot be cancelled")


async def spawn_each(h: Harness, fn: Any, args: Any) -> list[Any]:
    """Spawn one task per argument, each parked before the next starts (trio starts
    new tasks in random order)."""
    handles = []
    for arg in args:
        handles.append(h.spawn(fn, arg))
        await h.settle()
    return handles


async def serve(q: RequestQueue[int, int], count: int) -> list[int]:
    seen = []
    for _ in range(count):
        val, k = await q.get_one()
        seen.append(val)
        k.send(val * 10)
    return seen


def test_requests_are_served_in_order(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[int], list[int]]:
        q: RequestQueue[int, int] = RequestQueue()
        requesters = await spawn_each(h, q.request, range(6))
        server = h.spawn(serve, q, 6)
        await h.settle()
        return server.get(), [r.get() for r in requesters]

    assert dneio_runner.run(main) == ([0, 1, 2, 3, 4, 5], [0, 10, 20, 30, 40, 50])


def test_server_waiting_first(dneio_runner: Harness) -> None:
    seen: list[int] = []

    async def main(h: Harness) -> list[int]:
        q: RequestQueue[int, int] = RequestQueue()

        async def server() -> None:
            while True:
                try:
                    val, k = await q.get_one()
                except ClosedError:
                    return
                seen.append(val)
                k.send(val * 10)

        h.spawn(server)
        await h.settle()
        replies = [await q.request(i) for i in (7, 8, 9)]
        q.close()
        return replies

    assert dneio_runner.run(main) == [70, 80, 90]
    assert seen == [7, 8, 9]


def test_worker_started_with_reset_replies_to_tasks(dneio_runner: Harness) -> None:
    class Doubler:
        def __init__(self) -> None:
            self.q: RequestQueue[int, int] = RequestQueue()
            reset(self._run())

        async def _run(self) -> None:
            while True:
                try:
                    val, k = await self.q.get_one()
                except ClosedError:
                    return
                k.send(2 * val)

    async def main(h: Harness) -> list[int]:
        d = Doubler()
        tasks = await spawn_each(h, d.q.request, range(4))
        await h.settle()
        result = [t.get() for t in tasks] + [await d.q.request(21)]
        d.q.close()
        return result

    assert dneio_runner.run(main) == [0, 2, 4, 6, 42]


def test_server_throws_an_error_to_the_requester(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> str:
        q: RequestQueue[int, int] = RequestQueue()

        async def server() -> None:
            _, k = await q.get_one()
            k.throw(KeyError("no such thing"))

        h.spawn(server)
        with pytest.raises(KeyError, match="no such thing"):
            await q.request(1)
        return "ok"

    assert dneio_runner.run(main) == "ok"


def test_get_many_waits_for_one_then_takes_all_pending(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[list[int]], list[int]]:
        q: RequestQueue[int, int] = RequestQueue()
        batches: list[list[int]] = []

        async def server() -> None:
            while sum(map(len, batches)) < 4:
                batch = await q.get_many()
                batches.append([v for v, _ in batch])
                for v, k in batch:
                    k.send(-v)

        h.spawn(server)
        await h.settle()
        assert batches == []
        requesters = await spawn_each(h, q.request, (1, 2))
        requesters += [h.spawn(q.request, 3), h.spawn(q.request, 4)]
        await h.settle()
        return batches, [r.get() for r in requesters]

    batches, replies = dneio_runner.run(main)
    assert batches[:2] == [[1], [2]]
    assert sorted(v for b in batches[2:] for v in b) == [3, 4]
    assert all(batches)
    assert replies == [-1, -2, -3, -4]


def test_get_many_returns_every_pending_request_at_once(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[int], list[int]]:
        q: RequestQueue[int, int] = RequestQueue()
        requesters = await spawn_each(h, q.request, range(5))
        await h.settle()
        batch = await q.get_many()
        for v, k in batch:
            k.send(v + 100)
        await h.settle()
        return [v for v, _ in batch], [r.get() for r in requesters]

    assert dneio_runner.run(main) == ([0, 1, 2, 3, 4], [100, 101, 102, 103, 104])


def test_fetch_any_does_not_wait(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> tuple[list[Any], list[int], list[int]]:
        q: RequestQueue[str, str] = RequestQueue()
        empty = q.fetch_any()
        requesters = await spawn_each(h, q.request, "abc")
        await h.settle()
        pending = q.fetch_any()
        for v, k in pending:
            k.send(v.upper())
        await h.settle()
        return empty, [v for v, _ in pending], [r.get() for r in requesters]

    assert dneio_runner.run(main) == ([], ["a", "b", "c"], ["A", "B", "C"])


def test_close_fails_waiting_and_later_requesters_and_receivers(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> list[str]:
        q: RequestQueue[int, int] = RequestQueue()
        requester = h.spawn(q.request, 1)
        await h.settle()
        other: RequestQueue[int, int] = RequestQueue()
        receiver = h.spawn(other.get_one)
        many = h.spawn(other.get_many)
        await h.settle()
        boom = OSError("gone")
        q.close(boom)
        other.close()
        await h.settle()
        out = []
        for handle in (requester, receiver, many):
            with pytest.raises((OSError, ClosedError)) as info:
                handle.get()
            out.append(type(info.value).__name__)
        with pytest.raises(OSError):
            await q.request(2)
        with pytest.raises(OSError):
            await q.get_one()
        with pytest.raises(OSError):
            q.fetch_any()
        with pytest.raises(ClosedError):
            await other.get_many()
        assert q.is_closed()
        q.close(ValueError("ignored: already closed"))
        with pytest.raises(OSError):
            await q.request(3)
        return out

    assert dneio_runner.run(main) == ["OSError", "ClosedError", "ClosedError"]


def test_a_taken_request_survives_close(dneio_runner: Harness) -> None:
    async def main(h: Harness) -> int:
        q: RequestQueue[int, int] = RequestQueue()
        requester = h.spawn(q.request, 5)
        await h.settle()
        val, k = await q.get_one()
        q.close()
        k.send(val + 1)
        await h.settle()
        return requester.get()  # type: ignore[no-any-return]

    assert dneio_runner.run(main) == 6


# -- cancellation -------------------------------------------------------------------


def test_cancelled_receiver_does_not_swallow_a_request(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, bool, Any]:
        q: RequestQueue[int, int] = RequestQueue()
        doomed = h.spawn(q.get_one)
        doomed_many = h.spawn(q.get_many)
        await h.settle()
        doomed.cancel()
        doomed_many.cancel()
        await h.settle()
        requester = h.spawn(q.request, 3)
        await h.settle()
        val, k = await q.get_one()
        k.send(val * 3)
        await h.settle()
        return doomed.cancelled, doomed_many.cancelled, requester.get()

    assert dneio_runner.run(main) == (True, True, 9)


def test_requester_cancelled_before_its_request_is_taken_withdraws_it(
    dneio_runner: Harness,
) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, list[int], int]:
        q: RequestQueue[int, int] = RequestQueue()
        first, second, third = await spawn_each(h, q.request, (1, 2, 3))
        await h.settle()
        second.cancel()
        await h.settle()
        pending = q.fetch_any()
        for v, k in pending:
            k.send(v)
        await h.settle()
        assert (first.get(), third.get()) == (1, 3)
        return second.cancelled, [v for v, _ in pending], len(q.fetch_any())

    assert dneio_runner.run(main) == (True, [1, 3], 0)


def test_replying_to_a_requester_cancelled_after_take_is_refused_loudly(
    dneio_runner: Harness,
) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> tuple[bool, bool, Any, bool]:
        q: RequestQueue[int, str] = RequestQueue()
        requester = h.spawn(q.request, 1)
        await h.settle()
        _, k = await q.get_one()
        before = k.is_cancelled()
        requester.cancel()
        await h.settle()
        with pytest.raises(RequestCancelledError) as info:
            k.send("late reply")
        with pytest.raises(RequestCancelledError):
            k.throw(ValueError("late error"))
        return before, k.is_cancelled(), info.value.value, requester.cancelled

    assert dneio_runner.run(main) == (False, True, "late reply", True)


def test_many_cancelled_requesters_are_forgotten(dneio_runner: Harness) -> None:
    needs_cancellation(dneio_runner)

    async def main(h: Harness) -> list[int]:
        q: RequestQueue[int, int] = RequestQueue()
        handles = await spawn_each(h, q.request, range(100))
        await h.settle()
        for i, handle in enumerate(handles):
            if i % 10:
                handle.cancel()
        await h.settle()
        served = []
        for v, k in q.fetch_any():
            served.append(v)
            k.send(v)
        await h.settle()
        assert len(q._requests._line) == 0
        return served

    assert dneio_runner.run(main) == list(range(0, 100, 10))


def test_reply_is_the_plain_continuation_for_native_requesters() -> None:
    q: RequestQueue[int, int] = RequestQueue()
    got: list[Any] = []

    async def requester() -> None:
        got.append(await q.request(4))

    reset(requester())
    [(val, k)] = q.fetch_any()
    assert type(k).__name__ == "NativeContinuation"
    k.send(val + 1)
    assert got == [5]


def test_reply_continuation_type_checks() -> None:
    def reply(k: Continuation[int]) -> None:
        k.send(1)

    q: RequestQueue[str, int] = RequestQueue()
    got: list[int] = []

    async def requester() -> None:
        got.append(await q.request("x"))

    reset(requester())
    [(_, k)] = q.fetch_any()
    reply(k)
    assert got == [1]


# -- the compiled fast path (_queue_c.c) and the reference it hands over to -----------
#
# Every test above runs on whichever path is in use; these pin which one is,
# and the cases where the compiled path must hand a request to the reference.


def test_the_compiled_fast_path_serves_wherever_the_core_is_compiled() -> None:
    from dneio._core._impl import compiled
    from dneio._primitives import _request_queue

    if compiled is None:
        assert _request_queue._queue_c is None
        assert "_requests" in RequestQueue.__slots__
    else:
        # Built with the core (setup.py): never a silent fall back.
        assert _request_queue._queue_c is not None
        core = _request_queue._queue_c.RequestQueueCore
        # The compiled methods, each as the class's own copy (own_methods).
        method = type(core.request_cb)

        def compiled_method(name: str) -> bool:
            found = getattr(RequestQueue, name)
            return type(found) is method and found.__objclass__ is RequestQueue

        assert compiled_method("request") and compiled_method("request_cb")
        assert compiled_method("get_one_cb") and compiled_method("get_one")
        assert _request_queue._reply_to is _request_queue._queue_c.reply_to
        assert issubclass(_request_queue.Reply, _request_queue._queue_c.ReplyCore)


def test_a_request_is_a_coroutine_to_task_spawners() -> None:
    import collections.abc

    q: RequestQueue[int, int] = RequestQueue()
    awaitable = q.request(3)
    assert isinstance(awaitable, collections.abc.Coroutine)
    awaitable.close()
    assert q.fetch_any() == []


@pytest.fixture(params=["in use", "compiled"])
def get_one(request: pytest.FixtureRequest) -> Any:
    """RequestQueue.get_one as the queue has it, and the compiled one (which
    serves only where it is cheaper than a coroutine, up to 3.11)."""
    if request.param == "in use":
        return RequestQueue.get_one
    from dneio._primitives import _request_queue

    if _request_queue._queue_c is None:
        pytest.skip("RequestQueue is not compiled here (pure-Python path)")
    return _request_queue._queue_c.RequestQueueCore.get_one


def test_get_one_takes_nothing_before_it_is_awaited(get_one: Any) -> None:
    import collections.abc

    q: RequestQueue[int, int] = RequestQueue()
    got: list[int] = []

    async def requester() -> None:
        got.append(await q.request(3))

    reset(requester())
    dropped = get_one(q)
    assert isinstance(dropped, collections.abc.Coroutine)
    dropped.close()  # never awaited: the request is still there
    reset(serve(q, 1))
    assert got == [30]
    # Thrown into before its first step: raised there, and nothing taken.
    reset(requester())
    thrown = get_one(q)
    with pytest.raises(KeyError):
        thrown.throw(KeyError("x"))
    reset(serve(q, 1))
    assert got == [30, 30]


def test_get_one_is_a_coroutine_to_task_spawners(dneio_runner: Harness, get_one: Any) -> None:
    if dneio_runner.name == "native":
        pytest.skip("native code has no task spawner")

    async def main(h: Harness) -> Any:
        q: RequestQueue[int, int] = RequestQueue()
        h.spawn(get_one, q)  # the task runs get_one() itself, with no coroutine around it
        await h.settle()
        got: list[Any] = []

        async def requester() -> None:
            got.append(await q.request(7))

        reset(requester())
        await h.settle()
        return got, q

    got, q = dneio_runner.run(main)
    # The server task took the request and ended without replying; the
    # requester still waits.
    assert got == [] and q.fetch_any() == []


def test_a_server_whose_get_one_is_closed_while_waiting_takes_nothing(get_one: Any) -> None:
    q: RequestQueue[int, int] = RequestQueue()
    waiting = get_one(q)

    async def server() -> Any:
        return await waiting

    coro = server()
    reset(coro)  # parked inside get_one's shift
    coro.close()
    got: list[int] = []

    async def requester() -> None:
        got.append(await q.request(5))

    reset(requester())
    reset(serve(q, 1))
    assert got == [50]
    with pytest.raises(RuntimeError):
        waiting.send(None)  # spent


def test_replies_to_host_requesters_are_guarded_and_native_ones_are_not() -> None:
    import asyncio

    from dneio._primitives._request_queue import Reply, _reply_to

    async def main() -> Any:
        q: RequestQueue[int, int] = RequestQueue()
        task = asyncio.get_running_loop().create_task(q.request(1))
        await asyncio.sleep(0)
        [(val, reply)] = q.fetch_any()
        assert type(reply) is Reply and _reply_to(reply._k) is not reply._k
        assert repr(reply).startswith("<reply to ")
        with pytest.raises(TypeError, match="exception instance"):
            reply.throw("not an exception")  # type: ignore[arg-type]
        assert reply._resume_unless_cancelled(False, val + 1) == (True, None)
        assert await task == 2
        # A second reply is refused by the continuation itself.
        with pytest.raises(RuntimeError):
            reply(3)

        task = asyncio.get_running_loop().create_task(q.request(4))
        await asyncio.sleep(0)
        [(_, reply)] = q.fetch_any()
        task.cancel()
        await asyncio.sleep(0)
        assert reply.is_cancelled()
        with pytest.raises(RequestCancelledError) as info:
            reply.send(40)
        assert info.value.value == 40
        assert reply._resume_unless_cancelled(True, ValueError()) == (False, None)
        with pytest.raises(asyncio.CancelledError):
            await task
        return True

    assert asyncio.run(main())

    async def native() -> int:
        return await shift(lambda k: got.append(k))

    got: list[Any] = []
    reset(native())
    assert _reply_to(got[0]) is got[0]


def test_a_closed_native_server_at_the_front_is_skipped_for_the_next() -> None:
    q: RequestQueue[int, int] = RequestQueue()
    first = serve(q, 1)
    reset(first)  # parked in get_one
    first.close()  # dropped before any request came
    second_got: list[list[int]] = []

    async def second() -> None:
        second_got.append(await serve(q, 1))

    reset(second())
    replies: list[int] = []

    async def requester() -> None:
        replies.append(await q.request(7))

    reset(requester())
    assert second_got == [[7]] and replies == [70]
    assert not q._receivers and not q._requests


def test_a_get_many_server_waiting_first_receives_a_list() -> None:
    q: RequestQueue[int, int] = RequestQueue()
    batches: list[list[int]] = []

    async def server() -> None:
        for _ in range(2):
            batch = await q.get_many()
            batches.append([v for v, _ in batch])
            for v, k in batch:
                k.send(-v)

    reset(server())
    replies: list[int] = []

    async def requester(v: int) -> None:
        replies.append(await q.request(v))

    reset(requester(1))
    reset(requester(2))
    assert batches == [[1], [2]] and replies == [-1, -2]


def test_a_server_that_raises_on_a_request_leaves_the_queue_usable() -> None:
    q: RequestQueue[int, int] = RequestQueue()

    async def fragile() -> None:
        val, k = await q.get_one()
        k.send(val)
        raise ValueError("the server broke")

    reset(fragile())
    got: list[int] = []

    async def requester(v: int) -> None:
        got.append(await q.request(v))

    # The server's error surfaces in whoever resumed it: the request, made
    # under reset here, so reset raises it; the reply was delivered first.
    with pytest.raises(ValueError, match="the server broke"):
        reset(requester(1))
    assert got == [1]
    assert not q._receivers and not q._requests
    reset(serve(q, 1))
    reset(requester(2))
    assert got == [1, 20]


def test_many_requests_line_up_behind_a_busy_server_in_order() -> None:
    """The server replies from inside the request; the next requests queue behind it."""
    q: RequestQueue[int, int] = RequestQueue()
    order: list[int] = []

    async def server() -> None:
        while True:
            val, k = await q.get_one()
            order.append(val)
            k.send(val)

    reset(server())
    got: list[int] = []

    async def requester(start: int) -> None:
        for i in range(start, start + 50):
            got.append(await q.request(i))

    reset(requester(0))
    reset(requester(1000))
    assert got == list(range(50)) + list(range(1000, 1050))
    assert order == got


def test_a_subclass_overriding_request_cb_is_asked_by_request() -> None:
    seen: list[int] = []

    class Logged(RequestQueue[int, int]):
        def request_cb(self, val: int, k: Any) -> None:
            seen.append(val)
            super().request_cb(val, k)

    q = Logged()
    reset(serve(q, 1))
    got: list[int] = []

    async def requester() -> None:
        got.append(await q.request(4))

    reset(requester())
    assert seen == [4] and got == [40]


def test_queue_methods_take_keywords_and_show_their_signature() -> None:
    import inspect

    q: RequestQueue[int, int] = RequestQueue()
    reset(serve(q, 2))
    got: list[int] = []

    async def requester() -> None:
        got.append(await q.request(val=1))
        got.append(await shift(lambda k: q.request_cb(val=2, k=k)))

    reset(requester())
    assert got == [10, 20]
    assert list(inspect.signature(RequestQueue.request).parameters) == ["self", "val"]
    assert list(inspect.signature(RequestQueue.request_cb).parameters) == ["self", "val", "k"]
    assert list(inspect.signature(RequestQueue.get_one_cb).parameters) == ["self", "k"]
    with pytest.raises(TypeError):
        q.request(1, val=2)  # type: ignore[call-arg]


def test_primitives_copy_and_pickle_as_plain_objects() -> None:
    import copy
    import pickle

    from dneio import Event, Lock

    q: RequestQueue[int, int] = RequestQueue()
    for original in (q, Event(), Lock()):
        pickled = pickle.loads(pickle.dumps(original))
        for clone in (copy.copy(original), copy.deepcopy(original), pickled):
            assert type(clone) is type(original)
            assert repr(clone) == repr(original)
    twin = copy.deepcopy(q)
    reset(serve(twin, 1))
    got: list[int] = []

    async def requester() -> None:
        got.append(await twin.request(3))

    reset(requester())
    assert got == [30] and not q._receivers


def test_a_subclass_overriding_get_one_cb_is_asked_by_get_one() -> None:
    seen: list[str] = []

    class Logged(RequestQueue[int, int]):
        def get_one_cb(self, k: Any) -> None:
            seen.append("class")
            super().get_one_cb(k)

    q = Logged()
    reset(serve(q, 2))  # it waits: no request yet
    got: list[int] = []
    reset(requester_of(q, 1, got))  # served; the server waits again
    reset(requester_of(q, 2, got))
    assert got == [10, 20] and seen == ["class", "class"]
    # An instance attribute hides the method, as for any attribute look-up.
    plain = Logged()
    plain.get_one_cb = lambda k: (seen.append("instance"), RequestQueue.get_one_cb(plain, k))  # type: ignore[method-assign]
    reset(serve(plain, 1))
    reset(requester_of(plain, 3, got))
    assert got[-1] == 30 and seen[-1] == "instance"


def requester_of(q: RequestQueue[int, int], val: int, got: list[int]) -> Any:
    async def requester() -> None:
        got.append(await q.request(val))

    return requester()


def test_a_requester_of_any_kind_is_resumed_through_its_own_attribute() -> None:
    """A continuation the queue does not know is guarded like a host one, and
    resumed through what its ``_resume_unless_cancelled`` attribute is, an
    instance attribute included."""
    log: list[Any] = []

    class Anything:
        def __init__(self) -> None:
            self._resume_unless_cancelled = self.instance_resume

        def is_cancelled(self) -> bool:
            return False

        def on_cancel(self, callback: Any) -> None:
            pass

        def instance_resume(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
            log.append(("instance", is_exc, value))
            return True, None

        def class_resume(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
            log.append(("class", is_exc, value))
            return True, None

    class ClassOnly(Anything):
        __slots__ = ()

        def __init__(self) -> None:
            pass

        _resume_unless_cancelled = Anything.class_resume

    q: RequestQueue[int, int] = RequestQueue()
    reset(serve(q, 2))
    q.request_cb(1, Anything())
    q.request_cb(2, ClassOnly())
    assert log == [("instance", False, 10), ("class", False, 20)]


def test_a_requester_whose_class_has_its_own_attribute_look_up_is_resumed_through_it() -> None:
    """A class with its own ``__getattribute__`` answers for its
    ``_resume_unless_cancelled``, as the attribute look-up asks it to."""
    log: list[Any] = []

    class Traced:
        __slots__ = ()

        def __getattribute__(self, name: str) -> Any:
            if name == "_resume_unless_cancelled":
                return lambda is_exc, value: (log.append(("traced", value)), (True, None))[1]
            return object.__getattribute__(self, name)

        def is_cancelled(self) -> bool:
            return False

        def on_cancel(self, callback: Any) -> None:
            pass

        def _resume_unless_cancelled(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
            log.append(("class", value))
            return True, None

    q: RequestQueue[int, int] = RequestQueue()
    reset(serve(q, 1))
    q.request_cb(1, Traced())
    assert log == [("traced", 10)]


def test_the_reply_guard_asks_a_requesters_class_as_the_reference_does() -> None:
    """Whether a requester needs the guard is read from its class, on both
    paths: a class without ``is_cancelled`` of its own is an error, even if
    its instances forward every attribute."""
    from dneio._primitives import _request_queue

    class Proxy:
        __slots__ = ("_k",)

        def __init__(self, k: Any) -> None:
            self._k = k

        def __getattr__(self, name: str) -> Any:
            return getattr(self._k, name)

    for reply_to in (_request_queue._reply_to, _request_queue._py_reply_to):
        with pytest.raises(AttributeError, match="is_cancelled"):
            reply_to(Proxy(object()))


def test_a_request_reaches_a_server_through_every_kind_of_await() -> None:
    # The request and its reply continuation go down the server's await
    # chain to its get_one(): directly, through coroutines, and through an
    # awaitable that drives get_one() by hand and sees (and here changes)
    # what passes through it.
    from dneio import reset

    seen: list[Any] = []

    class Recording:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __await__(self) -> Any:
            it = self.inner.__await__()
            sent: Any = None
            while True:
                try:
                    yielded = it.send(sent)
                except StopIteration as stop:
                    return stop.value
                sent = yield yielded
                seen.append(sent)
                sent = (sent[0] * 10, sent[1])

    async def nested(q: RequestQueue[int, int], levels: int) -> Any:
        if levels == 0:
            return await q.get_one()
        return await nested(q, levels - 1)

    ways = {
        "direct": (lambda q: q.get_one(), 1),
        "nested": (lambda q: nested(q, 3), 1),
        "recorded": (lambda q: Recording(q.get_one()), 10),
    }
    for name, (take, factor) in ways.items():
        q: RequestQueue[int, int] = RequestQueue()
        replies: list[Any] = []

        async def server(q: RequestQueue[int, int] = q, take: Any = take) -> None:
            while True:
                value, k = await take(q)
                k.send(value + 1)

        async def requester(i: int, q: RequestQueue[int, int] = q) -> None:
            replies.append(await q.request(i))

        seen.clear()
        reset(server())
        for i in range(5):
            # The server is parked in its get_one when each request comes.
            reset(requester(i))
        assert replies == [i * factor + 1 for i in range(5)], name
        assert len(seen) == (5 if name == "recorded" else 0)


@pytest.mark.parametrize("bad", [ValueError, "shutting down"])
def test_closing_a_queue_with_something_not_an_exception_is_refused(
    dneio_runner: Harness, bad: Any
) -> None:
    """The error comes at once; the queue stays open and its requester is served."""

    async def main(h: Harness) -> Any:
        q: RequestQueue[int, int] = RequestQueue()
        r = h.spawn(q.request, 20)
        await h.settle()
        with pytest.raises(TypeError, match="exception instance"):
            q.close(bad)
        assert not q.is_closed()
        val, k = await q.get_one()
        k.send(val + 1)
        await h.settle()
        return r.get()

    assert dneio_runner.run(main) == 21

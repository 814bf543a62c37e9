"""``RequestQueue``: tasks send requests, a server takes them and replies to each."""

from __future__ import annotations

from collections.abc import Coroutine
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._core._continuation import AnsweringContinuation, Continuation
from .._core._driver import NativeContinuation, is_live_native
from .._core._impl import own_methods
from .._core._registry import ki_sensitive
from .._core._shift import shift
from ._errors import ClosedError, check_exception
from ._waiters import Waiters, _NoCore, _queue_c, resume_unless_cancelled, wake_all

In = TypeVar("In")
Out = TypeVar("Out")

_never_cancelled = AnsweringContinuation.is_cancelled

# The compiled fast path of a request and of a server's wait (``_queue_c.c``),
# where the compiled core is in use; the methods below stay the reference.
_QueueBase: Any = _NoCore if _queue_c is None else _queue_c.RequestQueueCore


class RequestCancelledError(RuntimeError):
    """A reply was refused: the requester was cancelled after its request was taken.

    ``value`` holds what the reply carried (the value sent, or the exception
    thrown), so the server can undo or reuse it.
    """

    def __init__(self, message: str, value: object) -> None:
        super().__init__(message)
        self.value = value


class PyReplyCore(AnsweringContinuation[Any, Any, Any]):
    """The hot part of :class:`Reply`: its field and its resumption.

    The compiled twin is ``_queue_c.ReplyCore``.
    """

    __slots__ = ("_k",)

    def __init__(self, k: AnsweringContinuation[Any, Any, Any]) -> None:
        self._k = k

    def send(self, value: Any) -> Any:
        delivered, answer = resume_unless_cancelled(self._k, False, value)
        if not delivered:
            raise self._refused(value)
        return answer

    def throw(self, exc: BaseException) -> Any:
        if not isinstance(exc, BaseException):
            raise TypeError(f"throw() takes an exception instance, not {exc!r}")
        delivered, answer = resume_unless_cancelled(self._k, True, exc)
        if not delivered:
            raise self._refused(exc)
        return answer

    def _resume_unless_cancelled(self, is_exc: bool, value: Any) -> tuple[bool, Any]:
        return resume_unless_cancelled(self._k, is_exc, value)

    __call__ = send

    def _refused(self, value: object) -> RequestCancelledError:
        raise NotImplementedError  # Reply's


if TYPE_CHECKING or _queue_c is None:
    _ReplyBase = PyReplyCore
else:

    class _ReplyBase(_queue_c.ReplyCore, AnsweringContinuation[Any, Any, Any]):
        __slots__ = ()


@own_methods
class Reply(_ReplyBase, AnsweringContinuation[Any, Out, Any]):
    """The continuation of a requester, as its server sees it.

    It resumes the requester like the requester's own continuation, except
    that a reply to a requester cancelled in the meantime raises
    :class:`RequestCancelledError` in the replier instead of vanishing.
    Check :meth:`is_cancelled` first to avoid the error.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<reply to {self._k!r}>"

    def is_cancelled(self) -> bool:
        return self._k.is_cancelled()

    def on_cancel(self, callback: Any) -> None:
        self._k.on_cancel(callback)

    def shield(self) -> None:
        self._k.shield()

    def _refused(self, value: object) -> RequestCancelledError:
        return RequestCancelledError(
            f"the requester behind {self._k!r} was cancelled after its request was taken, "
            "so this reply cannot be delivered; check k.is_cancelled() before replying, "
            "or catch this error (its .value is the refused reply)",
            value,
        )


def _reply_to(k: AnsweringContinuation[Any, Out, Any]) -> AnsweringContinuation[Any, Out, Any]:
    # A continuation that can never be cancelled (native) needs no guard.
    kind = type(k)
    if kind is NativeContinuation or kind.is_cancelled is _never_cancelled:
        return k
    return Reply(k)


#: The reference, kept where the compiled reply_to stands in for it.
_py_reply_to = _reply_to


_QUEUE_FIELDS = ("_closed", "_closed_tb", "_receivers", "_requests")


class RequestQueue(_QueueBase, Generic[In, Out]):  # type: ignore[misc]
    """A line of requests, each waiting for its own reply.

    Requesters call :meth:`request` and wait for the reply.  A server takes
    requests with :meth:`get_one`, :meth:`get_many` or :meth:`fetch_any`,
    each paired with the requester's continuation, and replies by resuming
    it (``k.send(reply)`` or ``k.throw(error)``).  Requests are handed out
    in the order they were made.

    Cancellation (trio, asyncio): a requester cancelled before its request
    is taken withdraws it.  A receiver cancelled while waiting takes
    nothing; the request goes to the next receiver.  A requester cancelled
    after its request was taken shows as ``k.is_cancelled()`` to the server,
    and replying to it raises :class:`RequestCancelledError` in the server.
    """

    # The compiled base holds these four fields itself.
    __slots__ = _QUEUE_FIELDS if _queue_c is None else ()

    def __init__(self) -> None:
        self._requests: Waiters[In] = Waiters()
        # Parked receivers; the payload says whether it wants a list (get_many).
        self._receivers: Waiters[bool] = Waiters()
        self._closed: BaseException | None = None
        # The closing exception's traceback when it was given: every later
        # operation raises it afresh from there, so that tracebacks do not
        # pile up on it (as asyncio.Future does with its exception).
        self._closed_tb: TracebackType | None = None

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # The default for slots, written out: the compiled base holds the
        # fields where the default does not look (copy, deepcopy, pickle).
        return None, {name: getattr(self, name) for name in _QUEUE_FIELDS}

    def _closing(self) -> BaseException:
        assert self._closed is not None
        return self._closed.with_traceback(self._closed_tb)

    def __repr__(self) -> str:
        state = "closed" if self._closed is not None else f"{len(self._requests)} pending"
        return f"<RequestQueue {state}>"

    # -- requesters -----------------------------------------------------------
    def request(self, val: In) -> Coroutine[Any, Any, Out]:
        """Send ``val`` and wait for the server's reply (or the error it throws).

        Use as ``reply = await queue.request(val)``.
        """
        # Not an ``async def``: the awaitable of shift itself, one coroutine fewer.
        return shift(partial(self.request_cb, val))

    @ki_sensitive
    def request_cb(self, val: In, k: AnsweringContinuation[Any, Out, Any]) -> None:
        """Make request ``val``; the reply resumes ``k``."""
        if self._closed is not None:
            k.throw(self._closing())
            return
        item = (val, _reply_to(k))
        while self._receivers._line:
            receiver = self._receivers.pop()
            if receiver is None:
                break
            rk, many = receiver
            # A receiver cancelled from another thread meanwhile takes nothing.
            if resume_unless_cancelled(rk, False, [item] if many else item)[0]:
                return
        self._requests.push(k, val)

    # -- servers ----------------------------------------------------------------
    async def get_one(self) -> tuple[In, Continuation[Out]]:
        """Wait for the next request; returns it with the continuation to reply on."""
        line = self._requests._line
        if line:
            k, val = line[0]
            if is_live_native(k):
                # The fast path: a native requester (it needs no Reply guard).
                line.popleft()
                return val, k
        # Through shift even when a request is waiting: under a deferred host
        # mode, a server that takes it at once must still line up behind the
        # tasks woken before it.
        return await shift(self.get_one_cb)

    @ki_sensitive
    def get_one_cb(self, k: AnsweringContinuation[Any, tuple[In, Continuation[Out]], Any]) -> None:
        """Resume ``k`` with the next request and its reply continuation."""
        if self._closed is not None:
            k.throw(self._closing())
            return
        entry = self._requests.pop() if self._requests._line else None
        if entry is None:
            self._receivers.push(k, False)
        else:
            rk, val = entry
            if not resume_unless_cancelled(k, False, (val, _reply_to(rk)))[0]:
                # This server was cancelled from another thread meanwhile: the
                # request goes back to the front of the line.
                self._requests._line.appendleft(entry)

    async def get_many(self) -> list[tuple[In, Continuation[Out]]]:
        """Wait for at least one request; returns every request pending, in order."""
        line = self._requests._line
        if line and is_live_native(line[0][0]):
            # The fast path (see get_one): at least this request is taken.  A
            # host requester, or a native one whose coroutine was closed
            # (dropped on the way), goes through shift.
            return self.fetch_any()
        return await shift(self.get_many_cb)

    @ki_sensitive
    def get_many_cb(
        self, k: AnsweringContinuation[Any, list[tuple[In, Continuation[Out]]], Any]
    ) -> None:
        """Resume ``k`` with a non-empty list of requests, once there is one."""
        if self._closed is not None:
            k.throw(self._closing())
            return
        if not self._requests:
            self._receivers.push(k, True)
            return
        entries = self._requests.pop_all()
        pending = [(val, _reply_to(rk)) for rk, val in entries]
        if pending and not resume_unless_cancelled(k, False, pending)[0]:
            self._requests._line.extendleft(reversed(entries))
        elif not pending:
            self._receivers.push(k, True)

    def fetch_any(self) -> list[tuple[In, Continuation[Out]]]:
        """Every pending request, in order, without waiting (an empty list if none).

        Raises the closing exception if the queue is closed.
        """
        if self._closed is not None:
            raise self._closing()
        return self._take_all()

    def _take_all(self) -> list[tuple[In, Continuation[Out]]]:
        if not self._requests:
            return []
        return [(val, _reply_to(k)) for k, val in self._requests.pop_all()]

    # -- closing ----------------------------------------------------------------
    def close(self, exc: BaseException | None = None) -> None:
        """Fail every waiting requester and receiver, and all later ones, with ``exc``.

        ``exc`` defaults to :class:`ClosedError`.  Requests already taken by
        a server are unaffected: it still owes them a reply.  Closing again
        does nothing.
        """
        if exc is not None:
            check_exception(exc, "RequestQueue.close()")
        if self._closed is not None:
            return
        if exc is None:
            exc = ClosedError("the RequestQueue was closed")
        self._closed = exc
        self._closed_tb = exc.__traceback__
        waiting: list[tuple[AnsweringContinuation[Any, Any, Any], Any]] = []
        waiting += self._requests.pop_all()
        waiting += self._receivers.pop_all()
        wake_all(waiting, exc, is_exc=True)

    def is_closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._closed is not None


if _queue_c is not None:
    # The compiled methods run the common cases and hand every other one to
    # these Python ones, which start over from the beginning.
    _queue_c.setup(
        request_cb=RequestQueue.request_cb,
        get_one_cb=RequestQueue.get_one_cb,
        resume_unless_cancelled=resume_unless_cancelled,
        shift=shift,
        queue_type=RequestQueue,
        native_type=NativeContinuation,
        never_cancelled=_never_cancelled,
        reply_type=Reply,
    )
    _reply_to = _queue_c.reply_to
    RequestQueue.request = _queue_c.RequestQueueCore.request  # type: ignore[method-assign]
    RequestQueue.request_cb = _queue_c.RequestQueueCore.request_cb  # type: ignore[method-assign]
    RequestQueue.get_one_cb = _queue_c.RequestQueueCore.get_one_cb  # type: ignore[method-assign]
    RequestQueue.get_one = _queue_c.RequestQueueCore.get_one  # type: ignore[method-assign]
    # Calls of these from Python taken directly by the interpreter (see own_methods).
    own_methods(RequestQueue)

"""Telling Twisted's coroutines apart, using two private names of Twisted's.

Twisted has no "current task": a coroutine run by ``Deferred.fromCoroutine``
(or ``ensureDeferred``) is stepped by the function that drives every such
coroutine, ``twisted.internet.defer._inlineCallbacks`` (through
``Failure.throwExceptionIntoGenerator`` when it throws an error in).  So
the coroutine that calls ``shift`` belongs to Twisted exactly when the
chain of coroutine frames it sits in was entered from one of those two
functions.  Walking the frames answers that soundly, even when a Twisted
coroutine is stepped inside an asyncio task's step (the asyncio reactor)
or the reverse.  It costs an attribute read per frame, so dneio walks only
where the cheap answer could be wrong: while a trio or asyncio task is
current (is a Twisted coroutine being stepped inside it?), and where no
reactor runs (Deferreds fired by hand).  In the reactor's thread, outside
trio and asyncio tasks, a coroutine is taken to be Twisted's at once.

``cancelling_status`` finds, while Twisted cancels a coroutine, the private
record (``_CancellationStatus``) through which a cancellation that a
shielded wait held off can be delivered again once the wait is over.

``check()`` verifies both on real coroutines.  If it fails, the Twisted
runner uses public API only: the cheap answer alone (a coroutine that no
trio or asyncio task claims, on the thread where the reactor runs, is
Twisted's; one stepped inside an asyncio task is refused with an error
that says so; with no reactor running, none is), and a held-off
cancellation is absorbed instead of repeated.
"""

from __future__ import annotations

import inspect
import sys
from types import CodeType, FrameType
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

problem = "not checked yet"

# A frame that runs a coroutine, a generator or an async generator: the
# links of an await chain.
_CHAIN_FLAGS = (
    inspect.CO_COROUTINE
    | inspect.CO_ITERABLE_COROUTINE
    | inspect.CO_GENERATOR
    | inspect.CO_ASYNC_GENERATOR
)


def _code(obj: Any) -> CodeType | None:
    code = getattr(obj, "__code__", None)
    return code if isinstance(code, CodeType) else None


#: The functions that step a coroutine run by Deferred.fromCoroutine: with
#: the next result, and with an error to throw in.
_STEP: CodeType | None = _code(getattr(defer, "_inlineCallbacks", None))
_THROW: CodeType | None = _code(getattr(Failure, "throwExceptionIntoGenerator", None))


def _find_handle_cancel() -> CodeType | None:
    """The code that cancels what a cancelled coroutine waits on (it has ``status``).

    A module-level function in recent Twisted releases; before 23.x, the
    ``handleCancel`` closure inside ``_cancellableInlineCallbacks``.
    """
    code = _code(getattr(defer, "_handleCancelInlineCallbacks", None))
    if code is not None:
        return code
    outer = _code(getattr(defer, "_cancellableInlineCallbacks", None))
    for const in outer.co_consts if outer is not None else ():
        if isinstance(const, CodeType) and const.co_name == "handleCancel":
            return const
    return None


_HANDLE_CANCEL: CodeType | None = _find_handle_cancel()

_getframe = sys._getframe


def driven_by_twisted(frame: FrameType | None) -> bool:
    """True if the innermost coroutine at or above ``frame`` is stepped by Twisted.

    Plain frames below the first coroutine frame are skipped (the caller's
    own helpers), then the chain of coroutines awaiting one another; the
    frame that stepped the outermost of them decides.  A driver met among
    the plain frames decides too: it is stepping an awaitable written in C
    (the compiled ``shift``, which an ``inlineCallbacks`` generator can
    yield to Twisted directly).
    """
    # Compared by identity: hashing a code object hashes its bytecode.
    step, throw = _STEP, _THROW
    while frame is not None and not frame.f_code.co_flags & _CHAIN_FLAGS:
        code = frame.f_code
        if code is step or code is throw:
            return True
        frame = frame.f_back
    while frame is not None and frame.f_code.co_flags & _CHAIN_FLAGS:
        frame = frame.f_back
    if frame is None:
        return False
    code = frame.f_code
    return code is step or code is throw


def in_twisted_coroutine() -> bool:
    """True if the code calling this runs in a coroutine that Twisted steps."""
    return driven_by_twisted(_getframe(1))


def cancelling_status() -> Any:
    """While Twisted cancels a coroutine: its ``_CancellationStatus`` (else None).

    Twisted cancels what the coroutine waits on from
    ``_handleCancelInlineCallbacks(result, status)`` (or its older closure
    form), a few frames up.
    """
    if _HANDLE_CANCEL is None:
        return None
    frame: FrameType | None = _getframe(1)
    for _ in range(12):
        if frame is None:
            return None
        if frame.f_code is _HANDLE_CANCEL:
            status = frame.f_locals.get("status")
            return status if isinstance(getattr(status, "deferred", None), defer.Deferred) else None
        frame = frame.f_back
    return None


def check() -> bool:
    """True if Twisted's coroutines can be told apart and their cancellation repeated."""
    global problem
    if _STEP is None or _THROW is None:
        problem = (
            "twisted.internet.defer has no _inlineCallbacks "
            "(or Failure has no throwExceptionIntoGenerator)"
        )
        return False
    if _HANDLE_CANCEL is None or "status" not in (
        _HANDLE_CANCEL.co_varnames + _HANDLE_CANCEL.co_freevars
    ):
        problem = "twisted.internet.defer has no _handleCancelInlineCallbacks(result, status)"
        return False
    seen: list[object] = []

    def canceller(d: defer.Deferred[Any]) -> None:
        seen.append(cancelling_status())
        d.callback("held off")

    async def probe() -> None:
        seen.append(in_twisted_coroutine())  # first step
        seen.append(await defer.succeed("sent"))  # an awaited Deferred that has fired
        pending: defer.Deferred[str] = defer.Deferred()
        waiting.append(pending)
        seen.append(await pending)
        seen.append(in_twisted_coroutine())  # stepped by a callback
        try:
            await defer.fail(KeyError("thrown"))
        except KeyError:
            seen.append(in_twisted_coroutine())  # stepped through a thrown error
        seen.append(await defer.Deferred(canceller))

    waiting: list[defer.Deferred[str]] = []
    try:
        outer = defer.Deferred.fromCoroutine(probe())
        waiting[0].callback("called back")
        outer.cancel()
        outcome: list[object] = []
        outer.addBoth(outcome.append)
    except Exception as exc:
        problem = f"probing Twisted's coroutine driver failed: {exc!r}"
        return False
    expected = [True, "sent", "called back", True, True]
    if seen[:5] != expected or len(seen) != 7:
        problem = f"Twisted steps coroutines in a way dneio does not recognise ({seen!r})"
        return False
    if seen[5] is None or seen[6] != "held off" or outcome != [None]:
        problem = "dneio cannot find the cancellation record of a Twisted coroutine"
        return False
    # And a coroutine that something else steps is not taken for Twisted's.
    async def elsewhere() -> bool:
        return in_twisted_coroutine()

    try:
        elsewhere().send(None)
    except StopIteration as stop:
        if stop.value is not False:
            problem = "dneio takes coroutines that Twisted does not step for Twisted's"
            return False
    problem = ""
    return True

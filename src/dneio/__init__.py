"""dneio: portable shift/reset for async Python.

``await shift(func)`` hands the rest of the current coroutine to ``func`` as
a single-shot continuation, so any object that takes a callback can serve as
an ordinary awaitable.  Coroutines run natively under :func:`reset`, or
inside trio and asyncio tasks, and continuations resume synchronously and in
order.
"""

from . import _hosts as _hosts  # registers the host runners with the engine
from ._core._continuation import (
    AnsweringContinuation,
    Continuation,
    ContinuationSpentError,
    CoroutineClosedError,
)
from ._core._driver import reset
from ._core._shift import current_runner, shift
from ._hosts._parking import ContinuationDropped
from ._hosts._trio._direct import is_running_directly_under_trio
from ._primitives._channel import Channel
from ._primitives._errors import ClosedError, EndOfChannel
from ._primitives._event import Event
from ._primitives._first_of import Branch, Operation, first_of
from ._primitives._future import Future, InvalidStateError
from ._primitives._lock import Lock
from ._primitives._parallel import make_n_in_parallel, run_all, run_all_outcomes
from ._primitives._request_queue import Reply, RequestCancelledError, RequestQueue
from ._public import publish

__all__ = [
    "AnsweringContinuation",
    "Branch",
    "Channel",
    "ClosedError",
    "Continuation",
    "ContinuationDropped",
    "ContinuationSpentError",
    "CoroutineClosedError",
    "EndOfChannel",
    "Event",
    "Future",
    "InvalidStateError",
    "Lock",
    "Operation",
    "Reply",
    "RequestCancelledError",
    "RequestQueue",
    "current_runner",
    "first_of",
    "is_running_directly_under_trio",
    "make_n_in_parallel",
    "reset",
    "run_all",
    "run_all_outcomes",
    "shift",
]

publish("dneio", globals())


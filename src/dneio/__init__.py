"""dneio: portable shift/reset for async Python.

``await shift(func)`` hands the rest of the current coroutine to ``func`` as
a single-shot continuation, so any object that takes a callback can serve as
an ordinary awaitable.  Coroutines run natively under :func:`reset`, or
inside trio and asyncio tasks, and continuations resume synchronously and in
order.
"""

from ._channel import Channel
from ._continuation import AnsweringContinuation, Continuation, ContinuationSpentError
from ._errors import ClosedError, EndOfChannel
from ._event import Event
from ._first_of import Branch, Operation, first_of
from ._future import Future, InvalidStateError
from ._host_continuation import ContinuationDropped
from ._lock import Lock
from ._native import reset
from ._parallel import make_n_in_parallel, run_all, run_all_outcomes
from ._request_queue import Reply, RequestCancelledError, RequestQueue
from ._shift import current_runner, is_running_directly_under_trio, shift

__all__ = [
    "AnsweringContinuation",
    "Branch",
    "Channel",
    "ClosedError",
    "Continuation",
    "ContinuationDropped",
    "ContinuationSpentError",
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

"""dneio: portable shift/reset for async Python.

``await shift(func)`` hands the rest of the current coroutine to ``func`` as
a single-shot continuation, so any object that takes a callback can serve as
an ordinary awaitable.  Coroutines run natively under :func:`reset`, or
inside trio and asyncio tasks, and continuations resume synchronously and in
order.
"""

from ._continuation import AnsweringContinuation, Continuation, ContinuationSpentError
from ._host_continuation import ContinuationDropped
from ._native import reset
from ._shift import current_runner, is_running_directly_under_trio, shift

__all__ = [
    "AnsweringContinuation",
    "Continuation",
    "ContinuationDropped",
    "ContinuationSpentError",
    "current_runner",
    "is_running_directly_under_trio",
    "reset",
    "shift",
]

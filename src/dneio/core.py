"""The core names, where code written against the original ``dneio.core`` looks for them."""

from ._continuation import AnsweringContinuation, Continuation
from ._native import reset
from ._shift import is_running_directly_under_trio, shift
from ._trio_wait_readable import TrioSystemWaitReadable, set_trio_system_wait_readable

__all__ = [
    "AnsweringContinuation",
    "Continuation",
    "TrioSystemWaitReadable",
    "is_running_directly_under_trio",
    "reset",
    "set_trio_system_wait_readable",
    "shift",
]

"""A compatibility module: the names code written against the original ``dneio.core`` imports.

The engine itself lives in ``dneio._core``; everything here is re-exported
from ``dneio`` as well, except the trio wait-readable helpers.
"""

from ._core._continuation import AnsweringContinuation, Continuation
from ._core._driver import reset
from ._core._shift import shift
from ._hosts._trio._direct import is_running_directly_under_trio
from ._hosts._trio._wait_readable import TrioSystemWaitReadable, set_trio_system_wait_readable
from ._public import publish

__all__ = [
    "AnsweringContinuation",
    "Continuation",
    "TrioSystemWaitReadable",
    "is_running_directly_under_trio",
    "reset",
    "set_trio_system_wait_readable",
    "shift",
]

publish("dneio.core", globals())


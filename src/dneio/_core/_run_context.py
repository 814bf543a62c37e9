"""What one thread knows about the coroutines it runs; imports nothing of dneio.

This is the pure-Python twin of the compiled core's ``ThreadState``: the
two have the same fields, and :mod:`._impl` picks one.
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: Nested synchronous resumptions allowed before new ones are trampolined.
MAX_DEPTH = 40


class ThreadState:
    """What one thread knows about the coroutines it is running."""

    __slots__ = ("depth", "driving", "entry_host", "hold", "pump_pending", "queue")

    def __init__(self) -> None:
        # The coroutine the native driver is stepping right now, or None when
        # the code running belongs to a host task (or to no coroutine at all).
        self.driving: object = None
        # Nested resumptions on the stack now, and holds on running any.
        self.depth = 0
        self.hold = 0
        self.pump_pending = False
        # Claimed resumptions waiting their turn: (continuation, is_exc, value).
        self.queue: deque[tuple[Any, bool, Any]] = deque()
        # Whatever the entry hook keeps for this thread (see ``_driver.set_entry_hook``).
        self.entry_host: Any = None

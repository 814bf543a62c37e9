"""Whether the code running is a trio task itself (a name the original dneio had)."""

from __future__ import annotations

from ..._core._impl import current_state
from ..._core._registry import task_runner


def is_running_directly_under_trio() -> bool:
    """True in a trio task itself; false in a native coroutine, even one started by a trio task."""
    if current_state().driving is not None:
        return False
    runner = task_runner()
    return runner is not None and runner.name == "trio"

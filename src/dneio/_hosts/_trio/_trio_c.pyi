from collections.abc import Callable
from typing import Any

from ..._core._driver_c import SlotCore

class TrioSlotCore(SlotCore):
    task: Any
    token: Any
    def __init__(self, home: Any, task: Any, token: Any) -> None: ...
    def check_resumable(self, k: object, here: bool) -> None: ...
    def _wake(self, st: Any) -> None: ...
    def abort(self, raise_cancel: Any) -> Any: ...
    def throw(self, typ: Any, val: Any = ..., tb: Any = ...) -> Any: ...
    def close(self) -> None: ...

def setup(
    *,
    run_context: Any,
    runner: Any,
    hosting: Any,
    start_hosting: Callable[[], object],
    slot_type: type,
    continuation_type: type,
    wait_type: type,
    woken: object,
    step: Callable[[Any, Any], None],
    after_send: Callable[[Any, Any, str, Any], None],
    deliver_pending_cancel: Callable[[Any], None],
    abort_succeeded: Any,
    abort_failed: Any,
    after_task_step: Callable[[Any, Any], None],
    current_trio_token: Callable[[], Any],
    fast_trap: bool,
) -> None: ...
def disable() -> None: ...
def setup_continuation(
    continuation_type: type, send: Any, throw: Any, resume_unless_cancelled: Any, /
) -> None: ...
def setup_slot_reads(
    task_type: type,
    runner_type: type,
    host_type: type,
    run_type: type,
    hosting_type: type,
    native_hosting_type: type,
    /,
) -> None: ...
def slot_reads() -> list[str]: ...
def shift_if_in_task(func: Callable[[Any], Any]) -> Any: ...
def step(task: Any, send: Any) -> None: ...

class HostingCore:
    def enter_in_task(self, coro: Any) -> Any: ...

def leave(token: Any) -> None: ...

class Hook:
    def __init__(self, hosting: Any) -> None: ...
    def enter(self, st: Any, coro: Any) -> Any: ...
    def leave(self, token: Any) -> None: ...

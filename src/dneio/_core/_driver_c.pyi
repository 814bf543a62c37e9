from collections.abc import Callable, Coroutine
from typing import Any

class ThreadState:
    driving: Any
    queue: Any
    entry_host: Any
    depth: int
    hold: int
    pump_pending: bool

class NativeCore:
    _coro: Any
    _claimed: Any
    _ctx: Any
    _park: Any
    def __init__(self, coro: Any = ...) -> None: ...
    def send(self, value: Any) -> Any: ...
    def is_cancelled(self) -> bool: ...
    def on_cancel(self, callback: Callable[[], object]) -> None: ...
    def _park_resumed(self) -> None: ...

ShiftType: type

def take_shift(yielded: Any, default: Any) -> Any: ...
def is_live_native(k: object) -> bool: ...

def shift(func: Callable[[Any], Any]) -> Coroutine[Any, Any, Any]: ...
def set_entry_hook(value: Any) -> None: ...
def set_entry_probe_module(value: tuple[str, ...] | None) -> None: ...
def set_host_shift(value: Callable[[Any], Any]) -> None: ...
def reset(coro: Any) -> Any: ...
def setup(
    *,
    local: Any,
    shift_mark: object,
    resume: Callable[..., Any],
    drain: Callable[..., Any],
    func_failed: Callable[..., Any],
    after_foreign: Callable[..., Any],
    spent: Callable[[Any], Any],
    continuation_type: type,
    reset: Callable[[Any], Any],
    start_hosting: Callable[[], Any],
    run_cancel_callbacks: Callable[[Any], Any],
    fresh_coroutine: Any,
    max_depth: int,
) -> None: ...

from collections.abc import Callable, Coroutine
from typing import Any

class WaitersCore:
    _line: Any
    _dead: int
    _sweep_at: int

class RequestQueueCore:
    _closed: BaseException | None
    _closed_tb: Any
    _receivers: Any
    _requests: Any
    def request(self, val: Any) -> Coroutine[Any, Any, Any]: ...
    def request_cb(self, val: Any, k: Any) -> None: ...
    def get_one_cb(self, k: Any) -> None: ...
    def get_one(self) -> Coroutine[Any, Any, Any]: ...

def setup(
    *,
    request_cb: Callable[..., None],
    get_one_cb: Callable[..., None],
    resume_unless_cancelled: Callable[[Any, bool, Any], tuple[bool, Any]],
    shift: Callable[[Any], Any],
    queue_type: type,
    native_type: type,
    never_cancelled: Any,
    reply_type: type,
) -> None: ...

class ReplyCore:
    _k: Any
    def __init__(self, k: Any) -> None: ...
    def send(self, value: Any, /) -> Any: ...
    def throw(self, exc: BaseException, /) -> Any: ...
    def _resume_unless_cancelled(self, is_exc: bool, value: Any) -> tuple[bool, Any]: ...
    def __call__(self, value: Any, /) -> Any: ...

def reply_to(k: Any) -> Any: ...

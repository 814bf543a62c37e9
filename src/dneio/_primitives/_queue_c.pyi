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

def setup(
    *,
    request_cb: Callable[..., None],
    get_one_cb: Callable[..., None],
    reply_to: Callable[[Any], Any],
    shift: Callable[[Any], Any],
    queue_type: type,
) -> None: ...

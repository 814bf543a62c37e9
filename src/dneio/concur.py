"""The concurrency primitives, where code written against the original ``dneio.concur`` looks."""

from ._event import Event
from ._future import Future
from ._parallel import make_n_in_parallel, run_all
from ._request_queue import RequestQueue

__all__ = ["Event", "Future", "RequestQueue", "make_n_in_parallel", "run_all"]

"""The concurrency primitives, where code written against the original ``dneio.concur`` looks."""

from ._primitives._event import Event
from ._primitives._future import Future
from ._primitives._parallel import make_n_in_parallel, run_all
from ._primitives._request_queue import RequestQueue
from ._public import publish

__all__ = ["Event", "Future", "RequestQueue", "make_n_in_parallel", "run_all"]

publish("dneio.concur", globals())


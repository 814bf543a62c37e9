"""Operations inside Twisted coroutines, and the Twisted baseline they are compared with."""

from __future__ import annotations

from collections.abc import Callable

from ...._core._driver import reset
from . import api, start_clock, stop_clock
from .native import echo_server, requester


def _run_reactor(main: Callable[[], float]) -> float:
    """Run ``main`` inside a fresh Twisted reactor (installed for the run) and return its result."""
    from ....testing import fresh_reactor

    out: list[float] = []
    with fresh_reactor() as reactor:

        def go() -> None:
            try:
                out.append(main())
            finally:
                reactor.stop()

        reactor.callWhenRunning(go)
        reactor.run(installSignalHandlers=False)
    if not out:
        raise RuntimeError("the Twisted case did not run")
    return out[0]


def request(n: int) -> float:
    from twisted.internet.defer import Deferred

    def main() -> float:
        queue = api("RequestQueue")()
        reset(echo_server(queue))
        start = start_clock()
        done = Deferred.fromCoroutine(requester(queue, n))
        elapsed = stop_clock(start)
        if not done.called:
            raise RuntimeError("the Twisted requester did not finish")
        return elapsed

    return _run_reactor(main)


def deferred_ping_pong(n: int) -> float:
    """What a Twisted user writes instead: a DeferredQueue of requests, a Deferred per reply."""
    from twisted.internet.defer import Deferred, DeferredQueue

    def main() -> float:
        requests: DeferredQueue[tuple[int, Deferred[int]]] = DeferredQueue()

        async def server() -> None:
            while True:
                value, reply = await requests.get()
                reply.callback(value)

        async def client() -> None:
            for i in range(n):
                reply: Deferred[int] = Deferred()
                requests.put((i, reply))
                await reply

        Deferred.fromCoroutine(server())
        start = start_clock()
        done = Deferred.fromCoroutine(client())
        elapsed = stop_clock(start)
        if not done.called:
            raise RuntimeError("the Twisted client did not finish")
        return elapsed

    return _run_reactor(main)

"""``python -m dneio demo``: one line-echo protocol over loopback TCP, on every runner.

The protocol (server, connection handler, clients) is written once, in
direct style, against two objects it receives as arguments: an I/O object
(:mod:`dneio.io`) and a :class:`Group` that starts coroutines.  Only the few
lines that build those two objects differ between the native run (a
:class:`~dneio.io.Selector` and :func:`dneio.reset`), asyncio, trio and
Twisted.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.util
import os
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .._core._driver import reset
from .._core._shift import shift
from ..io import IO, Selector, host

LOOPBACK = "127.0.0.1"
Coro = Coroutine[Any, Any, Any]


# -- the protocol, written once ---------------------------------------------------
async def send_all(io: IO, sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await io.wait_writable(sock)
        else:
            view = view[sent:]


class LineReader:
    """Reads ``\\n``-terminated lines from a non-blocking socket."""

    def __init__(self, io: IO, sock: socket.socket) -> None:
        self.io = io
        self.sock = sock
        self.buffer = b""

    async def readline(self) -> bytes:
        """The next line, with its ``\\n``; ``b""`` at end of stream."""
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                await self.io.wait_readable(self.sock)
                continue
            if not data:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


async def connect(io: IO, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex((LOOPBACK, port))
    if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
        await io.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        sock.close()
        raise OSError(err, f"connecting to {LOOPBACK}:{port}: {os.strerror(err)}")
    return sock


async def accept(io: IO, listener: socket.socket) -> socket.socket:
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            await io.wait_readable(listener)
        else:
            conn.setblocking(False)
            return conn


@dataclass
class ServerStats:
    lines: int = 0
    open_now: int = 0
    open_at_once: int = 0


async def serve(io: IO, group: Group, listener: socket.socket, clients: int) -> ServerStats:
    """Accept ``clients`` connections, echoing each in its own coroutine."""
    stats = ServerStats()
    for _ in range(clients):
        conn = await accept(io, listener)
        group.spawn(echo_lines(io, conn, stats))
    return stats


async def echo_lines(io: IO, conn: socket.socket, stats: ServerStats) -> None:
    stats.open_now += 1
    stats.open_at_once = max(stats.open_at_once, stats.open_now)
    reader = LineReader(io, conn)
    try:
        while line := await reader.readline():
            await send_all(io, conn, line)
            stats.lines += 1
    finally:
        stats.open_now -= 1
        conn.close()


async def client(io: IO, port: int, ident: int, count: int) -> bool:
    """Send ``count`` numbered lines one at a time; True if each came back intact, in order."""
    await io.sleep(0.001 * ident)  # stagger the start, so the clients interleave
    sock = await connect(io, port)
    reader = LineReader(io, sock)
    in_order = True
    try:
        for n in range(count):
            line = f"client {ident} line {n}\n".encode()
            await send_all(io, sock, line)
            in_order &= await reader.readline() == line
        sock.shutdown(socket.SHUT_WR)
        in_order &= await reader.readline() == b""
    finally:
        sock.close()
    return in_order


@dataclass
class Report:
    runner: str
    clients: int
    messages: int
    echoed: int = 0
    in_order: bool = False
    open_at_once: int = 0
    seconds: float = 0.0
    errors: list[BaseException] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and self.in_order and self.echoed == self.clients * self.messages


async def echo_session(io: IO, group: Group, report: Report) -> None:
    """The whole scenario: a server and ``report.clients`` concurrent clients."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        results: list[bool] = []
        stats: list[ServerStats] = []

        async def keep(coro: Coroutine[Any, Any, Any], into: list[Any]) -> None:
            into.append(await coro)

        group.spawn(keep(serve(io, group, listener, report.clients), stats))
        for ident in range(report.clients):
            group.spawn(keep(client(io, port, ident, report.messages), results))
        await group.wait()
    finally:
        listener.close()
    report.errors.extend(group.errors)
    report.in_order = len(results) == report.clients and all(results)
    if stats:
        report.echoed = stats[0].lines
        report.open_at_once = stats[0].open_at_once


class Group:
    """Starts coroutines with the runner's own ``start`` and waits for them all.

    It is itself an effect handler written with ``shift``: :meth:`wait`
    hands its continuation to the group, and the last coroutine to finish
    resumes it.
    """

    def __init__(self, start: Callable[[Coro], object]) -> None:
        self._start = start
        self._running = 0
        self._waiter: Any = None
        self.errors: list[BaseException] = []

    def spawn(self, coro: Coro) -> None:
        self._running += 1
        self._start(self._watch(coro))

    async def _watch(self, coro: Coro) -> None:
        try:
            await coro
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self._running -= 1
            if not self._running and self._waiter is not None:
                k, self._waiter = self._waiter, None
                k.send(None)

    async def wait(self) -> None:
        if self._running:
            await shift(self._park)

    def _park(self, k: Any) -> None:
        self._waiter = k


# -- three runners, a few lines each -------------------------------------------
TIME_LIMIT = 10.0


def run_native(report: Report) -> None:
    with Selector() as selector:
        group = Group(start=reset)
        reset(echo_session(selector, group, report))
        if not selector.run(timeout=TIME_LIMIT):
            report.errors.append(TimeoutError(f"not finished after {TIME_LIMIT} s"))


async def _asyncio_main(report: Report) -> None:
    tasks: set[asyncio.Task[Any]] = set()

    def start(coro: Coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)  # asyncio keeps only weak references to tasks
        task.add_done_callback(tasks.discard)

    await asyncio.wait_for(echo_session(host(), Group(start), report), TIME_LIMIT)


def run_asyncio(report: Report) -> None:
    asyncio.run(_asyncio_main(report))


def run_uvloop(report: Report) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_asyncio_main(report))


def run_trio(report: Report) -> None:
    import trio

    async def main() -> None:
        with trio.fail_after(TIME_LIMIT):
            async with trio.open_nursery() as nursery:

                def start(coro: Coro) -> None:
                    nursery.start_soon(_await, coro)

                await echo_session(host(), Group(start), report)

    trio.run(main)


async def _await(coro: Coro) -> None:
    await coro


def run_twisted(report: Report) -> None:
    from twisted.internet.defer import ensureDeferred

    from ..testing import fresh_reactor

    # A reactor runs once per process: install a new default one for this run.
    with fresh_reactor() as reactor:

        def start(coro: Coro) -> None:
            ensureDeferred(coro)  # Group._watch keeps its errors

        def failed(failure: Any) -> None:
            report.errors.append(failure.value)

        def main() -> None:
            done = ensureDeferred(echo_session(host(), Group(start), report))
            done.addTimeout(TIME_LIMIT, reactor)
            done.addErrback(failed)
            done.addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(main)
        reactor.run(installSignalHandlers=False)


RUNNERS: dict[str, tuple[str, Callable[[Report], None]]] = {
    "native": ("dneio.io.Selector, coroutines started with dneio.reset", run_native),
    "asyncio": ("asyncio tasks, dneio.io.host()", run_asyncio),
    "trio": ("trio tasks, dneio.io.host()", run_trio),
    "uvloop": ("asyncio tasks on uvloop, dneio.io.host()", run_uvloop),
    "twisted": ("Twisted coroutines (ensureDeferred), dneio.io.host()", run_twisted),
}

#: What each runner needs installed besides dneio.
NEEDS = {"trio": "trio", "uvloop": "uvloop", "twisted": "twisted"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dneio demo",
        description="Run one direct-style line-echo protocol over loopback TCP "
        "natively, under asyncio, under trio, on uvloop and under Twisted, and check "
        "every echo.",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--messages", type=int, default=200, help="lines per client (default 200)")
    parser.add_argument(
        "--runners",
        default="native,asyncio,trio,uvloop,twisted",
        help="comma-separated runners to use, from native, asyncio, trio, uvloop, twisted "
        "(default: all)",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.runners.split(",") if n]
    unknown = [n for n in names if n not in RUNNERS]
    if unknown or args.clients < 1 or args.messages < 0:
        parser.error(
            f"unknown runner {unknown[0]!r}" if unknown else "--clients >= 1, --messages >= 0"
        )
    print(
        f"line echo over {LOOPBACK}: 1 server, {args.clients} clients x "
        f"{args.messages} lines, same protocol code on each runner"
    )
    failed = False
    for name in names:
        how, run = RUNNERS[name]
        need = NEEDS.get(name)
        if need is not None and importlib.util.find_spec(need) is None:
            print(f"  skip {name:8} {need} is not installed (pip install 'dneio[{need}]')")
            continue
        report = Report(name, args.clients, args.messages)
        started = time.perf_counter()
        try:
            run(report)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            report.errors.append(exc)
        report.seconds = time.perf_counter() - started
        failed |= not report.ok
        print(_format(report, how))
    print("FAILED" if failed else "all runners agree")
    return 1 if failed else 0


def _format(report: Report, how: str) -> str:
    verdict = "ok  " if report.ok else "FAIL"
    line = (
        f"  {verdict} {report.runner:8} {report.echoed:5} lines echoed, "
        f"{'in order' if report.in_order else 'OUT OF ORDER'}, "
        f"{report.open_at_once} connections open at once, {report.seconds:.2f} s  ({how})"
    )
    for exc in report.errors:
        line += f"\n       error: {type(exc).__name__}: {exc}"
    return line


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

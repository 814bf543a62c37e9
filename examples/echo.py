"""A line-echo server and its clients over loopback TCP, written once in direct style.

The protocol code below never names a runner.  It receives an I/O object
(``io``) and awaits its three operations, ``io.wait_readable(sock)``,
``io.wait_writable(sock)`` and ``io.sleep(seconds)``, on non-blocking sockets.
Whoever calls it decides how those waits are served:

* natively, by a ``dneio.io.Selector`` that blocks in the kernel itself;
* under asyncio or trio, by ``dneio.io.host()``, the running loop.

Run it with ``python examples/echo.py [native] [asyncio] [trio]`` (all three
by default).  It exits with status 1 if any echo came back wrong.
"""

from __future__ import annotations

import errno
import importlib.util
import socket
import sys
import time

import dneio
from dneio.io import IO, Selector, host

LOOPBACK = "127.0.0.1"


# -- small direct-style socket helpers ---------------------------------------------
async def send_all(io: IO, sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:  # the kernel buffer is full: wait for room
            await io.wait_writable(sock)
        else:
            view = view[sent:]


class LineReader:
    """Reads newline-terminated lines from a non-blocking socket."""

    def __init__(self, io: IO, sock: socket.socket) -> None:
        self.io, self.sock, self.buffer = io, sock, b""

    async def readline(self) -> bytes:
        """The next line, with its newline; ``b""`` once the peer has shut down."""
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:  # nothing yet: wait for data
                await self.io.wait_readable(self.sock)
                continue
            if not data:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"


async def accept(io: IO, listener: socket.socket) -> socket.socket:
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            await io.wait_readable(listener)
        else:
            conn.setblocking(False)
            return conn


async def connect(io: IO, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    err = sock.connect_ex((LOOPBACK, port))
    if err == errno.EINPROGRESS:  # the usual case: wait until connected
        await io.wait_writable(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        sock.close()
        raise OSError(err, f"could not connect to port {port}")
    return sock


# -- the protocol -----------------------------------------------------------------
async def echo_lines(io: IO, conn: socket.socket) -> int:
    """Send every line back until the client shuts down; return how many."""
    reader, count = LineReader(io, conn), 0
    with conn:
        while line := await reader.readline():
            await send_all(io, conn, line)
            count += 1
    return count


async def serve(io: IO, listener: socket.socket, clients: int) -> int:
    """Accept ``clients`` connections and echo each one concurrently."""
    handlers = []
    for _ in range(clients):
        conn = await accept(io, listener)
        # Future.start runs echo_lines right away, until it first waits.
        handlers.append(dneio.Future.start(echo_lines(io, conn)))
    return sum([await handler.get() for handler in handlers])


async def client(io: IO, port: int, ident: int, count: int) -> bool:
    """Send numbered lines one at a time; True if each came back intact and in order."""
    await io.sleep(0.001 * ident)  # stagger the clients a little
    sock = await connect(io, port)
    reader, ok = LineReader(io, sock), True
    with sock:
        for n in range(count):
            line = f"client {ident} line {n}\n".encode()
            await send_all(io, sock, line)
            ok = ok and await reader.readline() == line
        sock.shutdown(socket.SHUT_WR)
        ok = ok and await reader.readline() == b""
    return ok


async def echo_session(io: IO, clients: int = 4, messages: int = 50) -> tuple[int, bool]:
    """A server and ``clients`` concurrent clients; returns (lines echoed, all in order)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        echoed, *oks = await dneio.run_all(
            serve(io, listener, clients),
            *(client(io, port, i, messages) for i in range(clients)),
        )
    return echoed, all(oks)


# -- the same session on three runners ---------------------------------------------
def on_native() -> tuple[int, bool]:
    results: list[tuple[int, bool]] = []

    async def main(selector: Selector) -> None:
        results.append(await echo_session(selector))

    with Selector() as selector:
        dneio.reset(main(selector))  # runs until its first wait, then returns
        selector.run(timeout=10)  # blocks in the kernel, resuming waiters
    return results[0]


def on_asyncio() -> tuple[int, bool]:
    import asyncio

    async def main() -> tuple[int, bool]:
        return await echo_session(host())

    return asyncio.run(main())


def on_trio() -> tuple[int, bool]:
    import trio

    async def main() -> tuple[int, bool]:
        return await echo_session(host())

    return trio.run(main)


RUNNERS = {"native": on_native, "asyncio": on_asyncio, "trio": on_trio}


def main(names: list[str]) -> int:
    failed = False
    for name in names or list(RUNNERS):
        if name != "native" and importlib.util.find_spec(name) is None:
            print(f"{name:8} skipped: {name} is not installed")
            continue
        start = time.perf_counter()
        echoed, in_order = RUNNERS[name]()
        ok = echoed == 4 * 50 and in_order
        failed |= not ok
        print(
            f"{name:8} {echoed} lines echoed, {'in order' if in_order else 'OUT OF ORDER'}, "
            f"{time.perf_counter() - start:.2f} s{'' if ok else '  FAILED'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Results from worker threads, awaited in direct style.

``concurrent.futures.Future.add_done_callback`` is a callback API: the pool
calls you back, on the worker thread, once the job is done.  Handing it the
continuation of the current coroutine turns it into an ordinary ``await``:

    value = await result_of(pool.submit(job, arg))

Where the coroutine continues depends on who runs it:

* a native coroutine (started with ``dneio.reset``) continues on whichever
  thread resumes it: here, the worker thread that finished the job;
* a trio or asyncio task continues on its own loop's thread: its
  continuation hops there by itself.

Native coroutines resumed from several threads at once run in parallel, and
dneio's primitives (``run_all``, ``Event``...) are not thread-safe: let one
native coroutine wait for one thread at a time, as below, or wait in host
tasks, whose continuations all come back to their loop's thread.  (The
coroutines that ``dneio.run_all`` starts are native ones, even inside a
task: to wait side by side here, the example uses asyncio tasks.)

Run it with ``python examples/threads_futures.py``; it exits with status 1
if anything turns out differently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from typing import Any, TypeVar

import outcome

import dneio

T = TypeVar("T")


async def result_of(fut: concurrent.futures.Future[T]) -> T:
    """Wait for ``fut`` and return its result (or raise its exception)."""

    def on_done(k: dneio.Continuation[T]) -> None:
        # A task cancelled while it waits withdraws the job, if it has not started.
        k.on_cancel(fut.cancel)
        # Called at once if fut is already done: then nothing suspends at all.
        fut.add_done_callback(lambda f: k.resume(outcome.capture(f.result)))

    return await dneio.shift(on_done)


def slow_square(x: int, seconds: float = 0.01) -> int:
    time.sleep(seconds)
    return x * x


def thread() -> str:
    return threading.current_thread().name


def natively(pool: concurrent.futures.ThreadPoolExecutor) -> list[str]:
    """A native coroutine follows its results from thread to thread."""
    seen: list[str] = []
    finished = threading.Event()

    async def main() -> None:
        seen.append(f"native: starts on {thread()}")
        value = await result_of(pool.submit(slow_square, 7))
        seen.append(f"native: got {value} on {thread()}")
        # One result after the other: each wait may end on another worker.
        values = [await result_of(pool.submit(slow_square, i)) for i in range(4)]
        seen.append(f"native: got {values} on {thread()}")
        finished.set()

    dneio.reset(main())  # returns as soon as main first waits
    if not finished.wait(5):
        raise RuntimeError("the native coroutine did not finish")
    return seen


def under_asyncio(pool: concurrent.futures.ThreadPoolExecutor) -> list[str]:
    """An asyncio task stays on the loop's thread; cancelling it withdraws its job."""
    seen: list[str] = []

    async def main() -> None:
        seen.append(f"asyncio: starts on {thread()}")
        value = await result_of(pool.submit(slow_square, 7))
        seen.append(f"asyncio: got {value} on {thread()}")

        # Side by side, as four asyncio tasks: the results arrive on worker
        # threads, yet each task continues on the loop's thread.
        async def one(i: int) -> tuple[int, str]:
            return await result_of(pool.submit(slow_square, i)), thread()

        pairs = await asyncio.gather(*(one(i) for i in range(4)))
        threads = {name for _, name in pairs}
        seen.append(f"asyncio: got {[v for v, _ in pairs]} on {', '.join(sorted(threads))}")

        # One worker, kept busy: the second job waits in the pool's queue.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as single:
            busy = single.submit(slow_square, 1, 0.1)
            queued = single.submit(slow_square, 2)
            task = asyncio.get_running_loop().create_task(result_of(queued))
            await asyncio.sleep(0.01)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            await result_of(busy)
            seen.append(f"asyncio: cancelled waiter withdrew its job: {queued.cancelled()}")

    asyncio.run(main())
    return seen


def main() -> int:
    with concurrent.futures.ThreadPoolExecutor(thread_name_prefix="worker") as pool:
        lines = natively(pool) + under_asyncio(pool)
    for line in lines:
        print(line)
    main_thread = threading.main_thread().name
    expected: list[Any] = [
        lines[0] == f"native: starts on {main_thread}",
        "native: got 49 on worker" in lines[1],
        "[0, 1, 4, 9] on worker" in lines[2],
        all(line.endswith(main_thread) for line in lines[3:6]),
        "[0, 1, 4, 9]" in lines[5],
        lines[6].endswith("True"),
    ]
    if not all(expected):
        print("FAILED: unexpected threads or results")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

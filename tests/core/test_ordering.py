"""The ordering guarantee, tested adversarially (SPEC section 4).

If k1 is resumed before k2, the code after k1's shift starts before the code
after k2's shift: on every runner, every time.  trio deliberately shuffles
the tasks it wakes together, so these tests wake many at once, in random
orders, from different places, with cancellations mixed in, over many
trials.
"""

from __future__ import annotations

import random
from typing import Any

from dneio import reset, shift
from dneio.testing import Harness

TRIALS = 60
TASKS = 25
ROUNDS = 3


async def _trial(h: Harness, rng: random.Random, resume_from: str) -> None:
    parked: dict[int, Any] = {}
    log: list[tuple[int, int]] = []  # (sequence number received, task)
    cancelled: set[int] = set()

    async def worker(i: int) -> None:
        for _ in range(ROUNDS):
            seq = await shift(lambda k: parked.__setitem__(i, k))
            log.append((seq, i))

    handles = [h.spawn(worker, i) for i in range(TASKS)]
    seq = 0
    for _round in range(ROUNDS):
        await h.settle()
        ks = list(parked.items())
        parked.clear()
        rng.shuffle(ks)
        sends: list[tuple[Any, int]] = []
        for _i, k in ks:
            seq += 1
            sends.append((k, seq))

        def do_sends(sends: list[tuple[Any, int]] = sends) -> None:
            for k, s in sends:
                if h.cancellable and rng.random() < 0.05:
                    victim = rng.randrange(TASKS)
                    cancelled.add(victim)
                    handles[victim].cancel()
                k.send(s)

        if resume_from == "test body":
            do_sends()
        elif resume_from == "native coroutine":

            async def native() -> None:
                await shift(lambda k: k.send(None))
                do_sends()

            reset(native())
        else:

            async def resumer() -> None:
                do_sends()

            h.spawn(resumer)
        await h.settle()
    await h.settle()

    received = [s for s, _ in log]
    assert received == sorted(received), f"resumed out of order: {received}"
    assert len(set(received)) == len(received)
    for i, handle in enumerate(handles):
        if i not in cancelled:
            assert [t for _, t in log].count(i) == ROUNDS
            handle.get()


def _run_trials(dneio_runner: Harness, resume_from: str, seed: int) -> int:
    async def main(h: Harness) -> int:
        rng = random.Random(seed)
        for _ in range(TRIALS):
            await _trial(h, rng, resume_from)
        return TRIALS

    return dneio_runner.run(main)  # type: ignore[no-any-return]


def test_order_kept_resuming_from_the_test_body(dneio_runner: Harness) -> None:
    assert _run_trials(dneio_runner, "test body", seed=1) == TRIALS


def test_order_kept_resuming_from_another_task(dneio_runner: Harness) -> None:
    assert _run_trials(dneio_runner, "another task", seed=2) == TRIALS


def test_order_kept_resuming_from_a_native_coroutine(dneio_runner: Harness) -> None:
    assert _run_trials(dneio_runner, "native coroutine", seed=3) == TRIALS


def test_order_kept_when_resumed_tasks_resume_others(dneio_runner: Harness) -> None:
    """Resumptions made by resumed tasks, interleaved with the resumer's own."""

    async def main(h: Harness) -> list[int]:
        rng = random.Random(4)
        all_ok = []
        for _ in range(TRIALS):
            parked: dict[int, Any] = {}
            log: list[int] = []
            counter = [0]

            def send_next(i: int) -> None:
                k = parked.pop(i, None)
                if k is not None:
                    counter[0] += 1
                    k.send(counter[0])

            async def worker(i: int) -> None:
                seq = await shift(lambda k: parked.__setitem__(i, k))
                log.append(seq)
                # Wake a few others from inside this task.
                for j in rng.sample(range(TASKS), 3):
                    send_next(j)

            for i in range(TASKS):
                h.spawn(worker, i)
            await h.settle()
            while parked:
                send_next(rng.choice(list(parked)))
                await h.settle()
            assert log == sorted(log), log
            assert len(log) == TASKS
            all_ok.append(len(log))
        return all_ok

    assert dneio_runner.run(main) == [TASKS] * TRIALS

from dneio import shift
from dneio.testing import Harness


async def _park_and_resume(h: Harness) -> list[int]:
    box: list = []
    seen: list[int] = []

    async def waiter(i: int) -> None:
        seen.append(await shift(box.append))

    for i in range(5):
        h.spawn(waiter, i)
    await h.settle()
    for i, k in enumerate(list(box)):
        k.send(i)
    await h.settle()
    return seen


def test_park_and_resume(dneio_runner: Harness) -> None:
    assert dneio_runner.run(_park_and_resume) == [0, 1, 2, 3, 4]

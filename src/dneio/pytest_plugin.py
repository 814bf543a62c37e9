"""pytest plugin: the ``runner`` fixture runs a test on every dneio runner.

A test takes ``runner`` (a :class:`dneio.testing.Harness`) and calls
``runner.run(async_fn)``; it is collected once per runner.  Restrict the
runners with ``@pytest.mark.runners("trio", "asyncio")``, or from the
command line with ``--dneio-runners=native,trio``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .testing import ALL_RUNNERS, Harness


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--dneio-runners",
        default=",".join(ALL_RUNNERS),
        help="comma-separated runners for the `runner` fixture (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "runners(*names): run this test only on the named dneio runners"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "runner" not in metafunc.fixturenames:
        return
    chosen = [n for n in metafunc.config.getoption("--dneio-runners").split(",") if n]
    marker = metafunc.definition.get_closest_marker("runners")
    if marker is not None:
        chosen = [n for n in chosen if n in marker.args]
    metafunc.parametrize("runner", chosen, indirect=True)


@pytest.fixture
def runner(request: Any) -> Harness:
    name = request.param
    why = Harness.available(name)
    if why is not None:
        pytest.skip(f"runner {name}: {why}")
    return Harness(name)

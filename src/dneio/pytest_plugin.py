"""pytest plugin: the ``dneio_runner`` fixture runs a test on every dneio runner.

It acts only on tests that opt in, and only under names of its own:

* a test that takes the ``dneio_runner`` fixture (a :class:`dneio.testing.Harness`)
  is collected once per runner and calls ``dneio_runner.run(async_fn)``;
* ``@pytest.mark.dneio_runners("trio", "asyncio")`` restricts such a test,
  and ``--dneio-runners=native,trio`` restricts them all (a name that is not a
  runner is an error in either);
* a fixture called ``dneio_runner`` that a project defines itself wins over
  this one, and then the plugin leaves its tests alone.

Tests that do not ask for ``dneio_runner`` are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from .testing import ALL_RUNNERS, Harness

_MARKER = "dneio_runners"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--dneio-runners",
        default=",".join(ALL_RUNNERS),
        help="comma-separated runners for the `dneio_runner` fixture (default: all)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(*names): run this test only on the named dneio runners "
        "(tests that take the dneio_runner fixture)",
    )


@pytest.fixture(params=ALL_RUNNERS)
def dneio_runner(request: Any) -> Harness:
    """A :class:`dneio.testing.Harness` for each dneio runner in turn."""
    name = request.param
    why = Harness.available(name)
    if why is not None:
        pytest.skip(f"runner {name}: {why}")
    return Harness(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Refuse a marker naming runners that do not exist: it would deselect the test everywhere."""
    marker = metafunc.definition.get_closest_marker(_MARKER)
    if marker is None or "dneio_runner" not in metafunc.fixturenames:
        return
    if _ours(metafunc.definition):
        error = _unknown_runners(f"@pytest.mark.{_MARKER}", marker.args)
        if error is not None:
            pytest.fail(f"In {metafunc.definition.name}: {error}", pytrace=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the runs of ``dneio_runner`` tests on runners the option or marker leave out."""
    chosen = {n for n in config.getoption("--dneio-runners").split(",") if n}
    error = _unknown_runners("--dneio-runners", chosen)
    if error is not None:
        raise pytest.UsageError(error)
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = None if callspec is None else callspec.params.get("dneio_runner")
        if name is None or not _ours(item):
            keep.append(item)
            continue
        marker = item.get_closest_marker(_MARKER)
        if name in chosen and (marker is None or name in marker.args):
            keep.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _unknown_runners(where: str, names: Iterable[object]) -> str | None:
    """The error for the names in ``names`` that are not dneio runners, or None if all are."""
    unknown = sorted({repr(n) for n in names if n not in ALL_RUNNERS})
    if not unknown:
        return None
    return f"{where}: unknown runner(s) {', '.join(unknown)}; choose from {', '.join(ALL_RUNNERS)}"


def _ours(item: pytest.Item) -> bool:
    """True if the item's ``dneio_runner`` is this plugin's fixture, not a project's own."""
    info = getattr(item, "_fixtureinfo", None)
    defs = None if info is None else info.name2fixturedefs.get("dneio_runner")
    if not defs:
        return True
    return getattr(defs[-1].func, "__module__", None) == __name__

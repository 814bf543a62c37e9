"""The pytest plugin acts only on tests that opt in, under names of its own."""

from __future__ import annotations

from typing import Any

import pytest

from dneio import shift
from dneio.testing import ALL_RUNNERS, Harness

pytest_plugins = ["pytester"]


def test_a_foreign_runner_fixture_is_left_alone(pytester: pytest.Pytester) -> None:
    # click and typer users call their CliRunner fixture ``runner``.
    pytester.makeconftest(
        """
        import pytest

        class CliRunner:
            def invoke(self):
                return "invoked"

        @pytest.fixture
        def runner():
            return CliRunner()
        """
    )
    pytester.makepyfile(
        """
        def test_cli(runner):
            assert runner.invoke() == "invoked"

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.no_fnmatch_line("*test_cli[[]*")


def test_tests_that_ask_run_once_per_runner(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import dneio

        def test_everywhere(dneio_runner):
            async def main(h):
                return await dneio.shift(lambda k: k.send(h.name))
            assert dneio_runner.run(main) == dneio_runner.name

        def test_untouched():
            pass
        """
    )
    # In a process of its own: in this one, pytester would take the runners'
    # modules it imports (Twisted's) out of sys.modules again afterwards,
    # leaving the hosts dneio loaded holding classes nothing else uses.
    result = pytester.runpytest_subprocess("-v", "-p", "no:randomly")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == len(ALL_RUNNERS) + 1
    for name in ALL_RUNNERS:
        result.stdout.fnmatch_lines([f"*test_everywhere[[]{name}[]]*"])
    result.stdout.fnmatch_lines(["*test_untouched PASSED*"])


def test_marker_and_option_restrict_the_runners(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.dneio_runners("native", "asyncio")
        def test_some(dneio_runner):
            pass

        def test_all(dneio_runner):
            pass
        """
    )
    result = pytester.runpytest("-v", "-rs", "--dneio-runners=native,trio")
    outcomes = result.parseoutcomes()
    # trio's runs are skipped, saying why, where trio is not installed.
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 3
    assert outcomes["deselected"] == len(ALL_RUNNERS) * 2 - 3
    result.stdout.fnmatch_lines(["*test_some[[]native[]]*"])
    result.stdout.no_fnmatch_line("*test_some[[]trio[]]*")
    result = pytester.runpytest("--dneio-runners=native,nonesuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown runner*nonesuch*"])


def test_a_marker_naming_unknown_runners_is_an_error(pytester: pytest.Pytester) -> None:
    # A typo would otherwise deselect the test on every runner, silently.
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.dneio_runners("asynico", "native", "tiro")
        def test_typo(dneio_runner):
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest("--dneio-runners=native")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*In test_typo: @pytest.mark.dneio_runners: unknown runner(s) 'asynico', 'tiro';"
            f" choose from {', '.join(ALL_RUNNERS)}*"
        ]
    )
    result.stdout.no_fnmatch_line("*deselected*")
    result.stdout.no_fnmatch_line("*'native'*")


def test_a_projects_own_dneio_runner_fixture_wins(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(params=["mine-a", "mine-b"])
        def dneio_runner(request):
            return request.param
        """
    )
    pytester.makepyfile(
        """
        def test_own(dneio_runner):
            assert dneio_runner.startswith("mine-")
        """
    )
    result = pytester.runpytest("-v", "--dneio-runners=native")
    result.assert_outcomes(passed=2)


def test_a_runners_marker_of_another_plugin_is_not_read(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    runners: another plugin's marker\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.runners("something-else")
        def test_marked(dneio_runner):
            pass
        """
    )
    result = pytester.runpytest("--dneio-runners=native")
    result.assert_outcomes(passed=1, deselected=len(ALL_RUNNERS) - 1)


def test_a_failing_main_raises_its_own_error_on_every_runner(dneio_runner: Harness) -> None:
    """``Harness.run`` hides how each runner reports an error: a nursery or a
    task group would wrap it in an ExceptionGroup; it comes out as it is,
    and the tasks the main function spawned are cancelled, as on asyncio."""
    spawned: list[Any] = []
    kept: list[Any] = []

    async def waiter() -> None:
        await shift(kept.append)  # never resumed

    async def main(h: Harness) -> None:
        if h.cancellable:
            spawned.append(h.spawn(waiter))
        await h.settle()
        raise KeyError("from main")

    with pytest.raises(KeyError, match="from main"):
        dneio_runner.run(main)
    for handle in spawned:
        assert handle.done and handle.cancelled, repr(handle.exception)

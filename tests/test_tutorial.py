"""Every Python block of docs/tutorial.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def test_tutorial_blocks_run_in_order() -> None:
    pytest.importorskip("trio")
    pytest.importorskip("twisted")
    from dneio.testing import fresh_reactor

    # The page runs a reactor, as a program does: give it one of its own.
    with fresh_reactor():
        _run_blocks()


def _run_blocks() -> None:
    text = TUTORIAL.read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)
    assert len(blocks) >= 10, "the tutorial lost its examples"
    # Every fenced block on the page is a Python one: none escapes the test.
    assert len(re.findall(r"^```", text, re.M)) == 2 * len(blocks)
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for block in blocks:
        line = text[: text.index(block)].count("\n") + 1
        code = compile("\n" * (line - 1) + block, str(TUTORIAL), "exec")
        exec(code, namespace)

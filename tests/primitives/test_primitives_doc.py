"""Every Python block of docs/primitives.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "primitives.md"


def test_primitives_page_examples_run() -> None:
    text = PAGE.read_text()
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)
    assert len(blocks) >= 9, "the page lost its examples"
    assert len(re.findall(r"^```", text, re.M)) == 2 * len(blocks)
    namespace: dict[str, object] = {"__name__": "primitives_doc"}
    for block in blocks:
        line = text[: text.index(block)].count("\n") + 1
        exec(compile("\n" * (line - 1) + block, str(PAGE), "exec"), namespace)

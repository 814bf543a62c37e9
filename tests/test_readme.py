"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no Python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme_example"})


def test_readme_opens_with_the_two_setup_commands() -> None:
    text = README.read_text()
    first_block = re.search(r"```\n(.*?)```", text, re.S)
    assert first_block is not None
    commands = [line for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["python3 tasks.py demo", "python3 tasks.py test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python3 tasks.py test" in ci

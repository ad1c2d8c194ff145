"""The README shows the embedding example exactly as the tests run it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_embedding_example_is_the_tested_file() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Embedding a node", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    assert code.group(1) == (ROOT / "tests/nodelib/embedding_example.py").read_text()


def test_quick_start_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", quick, re.DOTALL)
    assert [c.strip() for c in commands] == [
        "python -m pip install -e . && rumor demo",
        'python -m pip install -e ".[test]" && python -m pytest',
    ]
    ci = (ROOT / ".ci/run").read_text()
    assert 'python -m pip install -e ".[test]" && python -m pytest' in ci

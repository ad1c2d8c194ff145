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


PACKAGES = ("crdt", "dht", "node", "rumor_runtime", "tui")


def test_the_layout_section_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block is not None
    named = set(re.findall(r"[\w.]+\.py\b", block.group(1)))
    folders = set(re.findall(r"(\w+)/", block.group(1)))
    modules = {
        path.name
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    }
    packages = {
        path.parent.name for package in PACKAGES for path in (ROOT / package).rglob("__init__.py")
    }
    assert modules - named == set(), "modules the README's layout does not show"
    assert named - modules == set(), "modules the README's layout shows that do not exist"
    assert packages - folders == set(), "packages the README's layout does not show"

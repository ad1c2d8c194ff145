"""Locate and load the shared test vectors (data only, never copied into this repository).

The vectors live in ``shared/vectors`` beside the repository root (``<root>/../shared``);
when that directory is absent every vector test is one clearly-skipped parameter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"
_MISSING = f"shared test vectors not found at {VECTORS_DIR} (expected beside the repository)"


def load(name: str) -> dict[str, Any] | None:
    """The parsed JSON file ``name`` from the vectors directory, or None if absent."""
    path = VECTORS_DIR / name
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def params(name: str, cases: list[tuple[str, Any]] | None) -> list[Any]:
    """``pytest.param`` per case (id, value), or one skipped param if the file is absent."""
    if cases is None:
        return [pytest.param(None, id=f"{name}-missing", marks=pytest.mark.skip(reason=_MISSING))]
    return [pytest.param(value, id=case_id) for case_id, value in cases]

"""Checks for the plain values a scenario is made of, each failing with one line that
names the key: a scenario file is refused before anything runs, never half-way through.

Every check raises `ValueError` (the scenario loader turns it into a `ScenarioError`);
none of them converts or defaults a value.
"""

from __future__ import annotations

import math
from collections.abc import Collection

__all__ = ["choice", "flag", "later", "number", "text", "whole"]


def _is_number(value: object) -> bool:
    # bool is an int to Python, never a number to a person writing a scenario.
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(
    key: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """`value` is a finite number within [low, high] (a bound left out when None, made
    exclusive by `low_open` / `high_open`)."""
    if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise ValueError(f"{key} must be a number, not {value!r}")
    assert isinstance(value, int | float)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        if high is None:
            wanted = f"{'>' if low_open else '>='} {low:g}"
        else:
            wanted = (
                f"in {'(' if low_open else '['}{low if low is None else format(low, 'g')}, "
                f"{high:g}{')' if high_open else ']'}"
            )
        raise ValueError(f"{key} must be {wanted}, not {value!r}")


def whole(key: str, value: object, *, low: int) -> None:
    """`value` is a whole number of at least `low`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be a whole number, not {value!r}")
    if value < low:
        raise ValueError(f"{key} must be >= {low}, not {value!r}")


def flag(key: str, value: object) -> None:
    """`value` is true or false."""
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")


def text(key: str, value: object) -> None:
    """`value` is a string."""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {value!r}")


def choice(key: str, value: object, allowed: Collection[str]) -> None:
    """`value` is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")


def later(key: str, value: float, first_key: str, first: float) -> None:
    """`key` (already a number) comes after `first_key`."""
    if not value > first:
        raise ValueError(f"{key} ({value:g}) must come after {first_key} ({first:g})")

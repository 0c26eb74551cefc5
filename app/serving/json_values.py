"""Checks on values decoded from a JSON body that numpy's conversion would hide."""

from __future__ import annotations

from typing import Any


def has_json_booleans(body: bytes) -> bool:
    """Whether a JSON body could hold true or false (a fast byte search: numpy would
    silently read them as 1 and 0 among numbers, so only then are values looked at)."""
    return b"true" in body or b"false" in body


def first_boolean(values: list[Any], where: str) -> str | None:
    """The path of the first true or false in nested lists, or None."""
    for index, value in enumerate(values):
        if isinstance(value, bool):
            return f"{where}[{index}]"
        if isinstance(value, list) and (found := first_boolean(value, f"{where}[{index}]")):
            return found
    return None

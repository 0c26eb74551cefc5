"""Checks on values decoded from a JSON body that numpy's conversion would hide."""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxstring, _SHOWN.maxother = 2, 4, 30, 30

# Below this size a plain byte search is cheapest; above it, one vectorised pass.
SMALL_BODY = 4096


def has_json_booleans(body: bytes) -> bool:
    """Whether a JSON body could hold true or false: numpy would silently read them as 1
    and 0 among numbers, so only then are the values looked at. A large body is scanned
    once for the 'e' both words end in and each one's preceding letters compared (CPython's
    substring search is slow on digits, whose bytes share its skip table with 'true')."""
    if len(body) < SMALL_BODY:
        return b"true" in body or b"false" in body
    raw = np.frombuffer(body, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("e"))
    ends = ends[ends >= 3]
    true = (raw[ends - 1] == ord("u")) & (raw[ends - 2] == ord("r")) & (raw[ends - 3] == ord("t"))
    if true.any():
        return True
    ends = ends[ends >= 4]
    false = (
        (raw[ends - 1] == ord("s"))
        & (raw[ends - 2] == ord("l"))
        & (raw[ends - 3] == ord("a"))
        & (raw[ends - 4] == ord("f"))
    )
    return bool(false.any())


def first_boolean(values: list[Any], where: str) -> str | None:
    """The path of the first true or false in nested lists, or None."""
    for index, value in enumerate(values):
        if isinstance(value, bool):
            return f"{where}[{index}]"
        if isinstance(value, list) and (found := first_boolean(value, f"{where}[{index}]")):
            return found
    return None


def shown(value: Any) -> str:
    """A client's value quoted in an error: at most 40 characters, and never a deep repr (a
    list nested a thousand levels would exhaust the interpreter's recursion)."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

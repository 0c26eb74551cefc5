"""One of pydantic's validation errors, typed: where it is (``loc``), what it says (``msg``)
and which check failed (``type``), read once from its ``ErrorDetails`` (the settings' errors,
a request's errors)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic_core import ErrorDetails


@dataclass(frozen=True)
class FieldError:
    """An error's place, message and kind (an item without one reads ``()`` or "None")."""

    loc: tuple[int | str, ...]
    msg: str
    type: str

    @classmethod
    def of(cls, details: ErrorDetails) -> FieldError:
        return cls(
            loc=tuple(details.get("loc", ())),
            msg=str(details.get("msg")),
            type=str(details.get("type")),
        )

"""Path, query and form parameters shared by the routes, bounded so that no number a client
sends can overflow a database column (a 4xx naming the parameter instead of a 500), and
strict: a number is its digits alone (``01``, ``+1``, ``1.0``, `` 1``, ``1_0`` are 422s,
not other spellings of 1 or 10), and a name is checked against, and published with, its
rule from ``app.core.names``."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Form, Header, Path, Query
from pydantic import BeforeValidator

from app.api.idempotency import HEADER, KEEP_HOURS, KEY_PATTERN
from app.contracts.enums import MAX_ID
from app.core.names import ALIAS, MODEL_NAME, shown

_POSITIVE = re.compile(r"[1-9][0-9]*")
_COUNT = re.compile(r"0|[1-9][0-9]*")


def _digits(pattern: re.Pattern[str], what: str) -> BeforeValidator:
    """A check of the text of a path, query or form number before pydantic reads it (which
    would take a sign, a point, spaces and underscores); the bounds are the field's."""

    def check(value: object) -> object:
        if isinstance(value, str) and pattern.fullmatch(value) is None:
            raise ValueError(
                f"expected {what} written in digits alone (no sign, point, spaces, "
                f"underscores or leading zeros), got {shown(value)}"
            )
        return value

    return BeforeValidator(check)


POSITIVE_DIGITS = _digits(_POSITIVE, "a whole number from 1")
COUNT_DIGITS = _digits(_COUNT, "a whole number from 0")

# The FastAPI parameter first, then the digits check: so the bounds reach the schema.
IdPath = Annotated[
    int, Path(ge=1, le=MAX_ID, description="An id or version number."), POSITIVE_DIGITS
]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Items to skip."), COUNT_DIGITS]
PageLimit = Annotated[int, Query(ge=1, le=500, description="Items per page."), POSITIVE_DIGITS]
VersionQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="A version number; "
        "default: the production alias, else the newest "
        "that a search or an upload registered.",
    ),
    POSITIVE_DIGITS,
]
VersionForm = Annotated[
    int | None,
    Form(ge=1, le=MAX_ID, description="Default: the version /v1 predict serves now."),
    POSITIVE_DIGITS,
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        pattern=KEY_PATTERN,
        description="Any string of up to 255 printable "
        f"characters: a repeat with the same key and body within {KEEP_HOURS} h gets the first "
        "answer, and creates nothing; the same key with another body is a 409.",
    ),
]
# Names follow app.core.names' rules on every route, reads included: a name no model could have
# (a trailing newline, a control character, a space at either end) is a 422 naming it. The
# schema publishes each rule as a pattern and a length.
ModelName = Annotated[
    str,
    MODEL_NAME.validator,
    MODEL_NAME.published,
    Path(description=f"A model's name: {MODEL_NAME.rule}."),
]
AliasName = Annotated[
    str,
    ALIAS.validator,
    ALIAS.published,
    Path(description=f"An alias, such as production: {ALIAS.rule}."),
]

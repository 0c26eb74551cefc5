"""Path and query parameters shared by the routes, bounded so that no number a client sends
can overflow a database column (a 4xx naming the parameter instead of a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query

from app.api.idempotency import HEADER, KEEP_HOURS, KEY_PATTERN
from app.contracts.enums import MAX_ID
from app.core.names import ALIAS, MODEL_NAME

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="An id or version number.")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Items to skip.")]
VersionQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="A version number; "
        "default: the production alias, else the newest "
        "that a search or an upload registered.",
    ),
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
# (a trailing newline, a control character, a space at either end) is a 422 naming it.
ModelName = Annotated[
    str, MODEL_NAME.validator, Path(description=f"A model's name: {MODEL_NAME.rule}.")
]
AliasName = Annotated[
    str, ALIAS.validator, Path(description=f"An alias, such as production: {ALIAS.rule}.")
]

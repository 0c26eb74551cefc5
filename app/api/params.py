"""Path and query parameters shared by the routes, bounded so that no number a client sends
can overflow a database column (a 4xx naming the parameter instead of a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Path, Query

from app.idempotency import HEADER, KEEP_HOURS, KEY_PATTERN
from app.tables import MAX_ID

IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="An id or version number.")]
Offset = Annotated[int, Query(ge=0, le=MAX_ID, description="Items to skip.")]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_ID, description="A version number; "
                                           "default: the production alias, else the newest "
                                           "that a search or an upload registered.")]
IdempotencyKey = Annotated[str | None, Header(
    alias=HEADER, pattern=KEY_PATTERN, description="Any string of up to 255 printable "
    f"characters: a repeat with the same key and body within {KEEP_HOURS} h gets the first "
    "answer, and creates nothing; the same key with another body is a 409.")]
# Names are checked against the registry's rules where they are written (with messages that
# say which rule); on every route they are bounded before any query.
ModelName = Annotated[str, Path(min_length=1, max_length=64, description="A model's name.")]
AliasName = Annotated[str, Path(min_length=1, max_length=64, description="An alias, such as "
                                "production.")]

"""What the job kinds' specs share. Each kind's own spec (what ``POST /v1/jobs`` takes
for it) lives in its package: ``app.search.spec``, ``app.compression.spec``,
``app.batch.spec``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.enums import MAX_ID
from app.core.names import ModelNameStr


class VersionRef(BaseModel):
    """A registered version by model name and number."""

    model_config = ConfigDict(extra="forbid")

    model: ModelNameStr
    version: int = Field(ge=1, le=MAX_ID, strict=True)

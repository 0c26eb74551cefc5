"""What ``POST /v1/jobs`` takes for a batch prediction job (``POST /v1/jobs/predict``
builds the same from a form and an uploaded CSV)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.enums import MAX_ID
from app.core.names import ModelNameStr

PREDICT_KIND = "predict"
MAX_KEY_COLUMNS = 32


class PredictJobCreate(BaseModel):
    """A batch prediction job: every row of a stored dataset's CSV (or of a CSV uploaded to
    ``POST /v1/jobs/predict``) through one version, in chunks of bounded memory, written
    to one output file next to the rows' key columns."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["predict"] = Field(description="What the job does.")
    model: ModelNameStr = Field(description="Registered model to predict with.")
    version: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=MAX_ID,
        description="Default: the "
        "version /v1 predict serves now (production alias, else the "
        "newest a search or an upload registered), fixed when the "
        "job is submitted.",
    )
    dataset_id: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=MAX_ID,
        description="Dataset "
        "whose uploaded CSV holds the rows (every row is "
        "predicted; its target column is ignored unless named in "
        "key_columns). Required here; POST /v1/jobs/predict takes "
        "an uploaded CSV instead.",
    )
    key_columns: list[str] = Field(
        default_factory=list,
        max_length=MAX_KEY_COLUMNS,
        description="Input columns copied to the output next to "
        "each row's predictions (an id, say). The output always "
        "starts with 'row', the row's 1-based number in the input.",
    )
    output_format: Literal["csv", "parquet"] = Field(
        default="csv", description="Format of GET /v1/jobs/{id}/output."
    )
    chunk_rows: int = Field(
        strict=True,
        default=16_384,
        ge=1_000,
        le=1_000_000,
        description="Rows read, "
        "predicted and stored at a time: memory is bounded by one chunk, "
        "and a job whose worker died resumes after its last stored chunk.",
    )

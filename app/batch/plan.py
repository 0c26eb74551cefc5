"""What a batch prediction job stores: its plan (fixed at submit) and its checkpoint (the
chunks it has finished, which a later attempt reuses)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BatchPlan(BaseModel):
    """The job's spec as stored: the request with the version and input it resolved to."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["predict"] = "predict"
    model: str
    version: int = Field(description="The version fixed at submit (aliases resolved).")
    dataset_id: int | None
    key_columns: list[str]
    output_format: Literal["csv", "parquet"]
    chunk_rows: int
    input_key: str = Field(description="Artifact key of the input CSV.")
    input_sha256: str | None = Field(
        default=None, description="Its sha256 (None: a job queued before digests were kept)."
    )
    filename: str
    feature_names: list[str] | None = Field(
        default=None,
        description="A single-tensor model's columns in its feature order "
        "(None: the CSV's columns besides the keys).",
    )


class Part(BaseModel):
    """One finished chunk, stored under ``part_key`` by attempt ``attempt``."""

    model_config = ConfigDict(extra="forbid")

    attempt: int
    index: int
    rows: int
    sha256: str


class Checkpoint(BaseModel):
    """The finished chunks, in order."""

    model_config = ConfigDict(extra="forbid")

    parts: list[Part] = Field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)


def part_key(job_id: int, part: Part) -> str:
    """Where a part lives: by index, not by attempt. A part is the same bytes whichever
    attempt predicts it (same rows, same model), so an attempt that died after storing a
    part but before recording it leaves nothing behind: the next attempt writes the same
    key again (atomically)."""
    return part_path(job_id, part.index)


def part_path(job_id: int, index: int) -> str:
    """The key of part number ``index`` of a job."""
    return f"jobs/{job_id}/parts/part-{index:06d}.arrow"


def output_key(job_id: int, attempt: int, output_format: str) -> str:
    return f"jobs/{job_id}/attempt-{attempt}/predictions.{output_format}"

"""Traffic policies and what serving measures about them, as typed, torch-free models: an
alias's weighted versions and shadow, the shadow's agreement with the version that
answered, request-log parts, drift windows and the events a model raises."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.contracts.enums import MAX_ID

MAX_ARMS = 10
ROUTE_KEY_HEADER = "x-kiln-route-key"  # requests with the same key see the same version
VERSION_HEADER = "x-kiln-version"  # every answer names the version that answered
REQUEST_ID_HEADER = "x-request-id"  # a logged request's id (sent back; the client may set it)


class TrafficArm(BaseModel):
    """One version of a split and its share of the traffic, in percent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1, le=MAX_ID, description="A live version of the model.")
    weight: int = Field(ge=1, le=100, description="Percent of the requests it answers.")


class TrafficSplit(BaseModel):
    """Versions sharing an alias's traffic by weight (summing to 100)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arms: tuple[TrafficArm, ...] = Field(min_length=1, max_length=MAX_ARMS)

    @model_validator(mode="after")
    def _adds_up(self) -> TrafficSplit:
        total = sum(arm.weight for arm in self.arms)
        if total != 100:
            weights = " + ".join(str(arm.weight) for arm in self.arms)
            raise ValueError(f"versions: weights must sum to 100, got {weights} = {total}")
        numbers = [arm.version for arm in self.arms]
        if len(set(numbers)) < len(numbers):
            raise ValueError(f"versions: a version is listed twice in {numbers}")
        return self

    @property
    def primary(self) -> int:
        """The version with the largest share (the first of equals): what the alias names."""
        return max(self.arms, key=lambda arm: arm.weight).version

    def choose(self, bucket: int) -> int:
        """The version answering a request whose bucket (0 to 99) is ``bucket``."""
        return self.routes()[bucket]

    def routes(self) -> tuple[int, ...]:
        """The version of each of the 100 buckets, in order of the arms."""
        return tuple(arm.version for arm in self.arms for _ in range(arm.weight))


class AliasPolicy(BaseModel):
    """What an alias holds: one version, or a split; and an optional shadow."""

    model_config = ConfigDict(frozen=True)

    version: int
    split: TrafficSplit | None = None
    shadow: int | None = None

    @property
    def answering(self) -> tuple[int, ...]:
        """The versions that answer requests through the alias (the shadow answers none)."""
        return tuple(arm.version for arm in self.split.arms) if self.split else (self.version,)


class ShadowStats(BaseModel):
    """A shadow version's answers compared with the version that answered the client:
    rows compared, the share that agreed (classification: the same class; regression:
    within 5% of each other), the mean absolute difference of their outputs, and what
    never reached the shadow (its queue was full) or failed there."""

    model: str
    primary_version: int
    shadow_version: int
    requests: int
    rows: int
    agreement: float | None
    mean_abs_diff: float | None
    dropped: int
    failures: int
    since: datetime
    updated_at: datetime


class ColumnDrift(BaseModel):
    """One input column's live distribution against the training profile."""

    column: str
    kind: Literal["numeric", "categorical", "datetime"]
    psi: float | None = Field(description="Population stability index (None: no reference).")
    missing_share: float = Field(description="Share of live values that were gaps.")
    unseen_share: float | None = Field(
        default=None, description="Categorical: share of live values training never saw."
    )
    reference_missing_share: float
    live_shares: list[float] | None = Field(
        default=None,
        description="The window's share of live values in each of the reference's "
        "buckets, in its order: a numeric column's bins between its training decile edges "
        "(the dataset profile's 'edges'), then gaps; a categorical column's most frequent "
        "training values (the profile's 'top'), the rest, then gaps (null: no reference, "
        "or a window stored before they were kept).",
    )


class DriftReport(BaseModel):
    """A window of live rows of one version, column by column."""

    model: str
    version: int
    rows: int
    threshold: float
    drifted: list[str] = Field(description="Columns whose PSI passed the threshold.")
    columns: list[ColumnDrift]
    ended_at: datetime


class DriftProgress(BaseModel):
    """How far one gateway process's open drift window of a version has got: each process
    samples the requests it answers and fills a window of its own."""

    model: str
    version: int
    gateway: str = Field(description="The gateway process (host and process id).")
    rows: int = Field(description="Sampled rows counted into its open window so far.")
    window_rows: int = Field(description="Rows a window needs (KILN_DRIFT_WINDOW_ROWS).")
    sample: float = Field(description="The share of requests it samples (KILN_DRIFT_SAMPLE).")
    rows_to_window: int | None = Field(
        description="About how many more predicted rows this process must answer before "
        "its window is full: (window_rows - rows) / sample (null: it samples none)."
    )
    updated_at: datetime


class ModelEvent(BaseModel):
    """Something serving noticed about a model (drift past its threshold, say)."""

    id: int
    model: str
    kind: str
    message: str
    detail: dict[str, Any] | None = None
    created_at: datetime

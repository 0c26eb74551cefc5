"""Request and response bodies of the traffic loop's routes: aliases with weights and a
shadow, their history, what serving measured, promotion."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.contracts.enums import MAX_ID
from app.contracts.traffic import (
    MAX_ARMS,
    ROUTE_KEY_HEADER,
    AliasPolicy,
    ShadowStats,
    TrafficArm,
    TrafficSplit,
)
from app.core.errors import InvalidInput


class WeightedVersion(BaseModel):
    """One version of a split as a client sends it: a ``TrafficArm`` whose numbers must be
    JSON integers (``"50"``, ``50.0`` and ``true`` are 422s, not 50 and 1)."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, le=MAX_ID, strict=True, description="A live version of the model.")
    weight: int = Field(
        ge=1, le=100, strict=True, description="Percent of the requests it answers."
    )


class AliasSet(BaseModel):
    """One version, or several by weight; optionally a shadow that sees a copy of the
    traffic and answers no one."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        strict=True,
        description="The live version the alias should point at.",
    )
    versions: list[WeightedVersion] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ARMS,
        description="Instead of 'version': live versions and their percent of the "
        "traffic (summing to 100), e.g. [{'version': 3, 'weight': 90}, {'version': 4, "
        f"'weight': 10}}]. A request with a '{ROUTE_KEY_HEADER}' header always gets the "
        "same version for the same key; one without is routed at random by weight.",
    )
    shadow: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        strict=True,
        description="A live version with the same inputs and outputs that receives a copy "
        "of the alias's traffic off the response path (its answers are compared, never sent).",
    )

    def split(self) -> TrafficSplit | None:
        """The weighted versions as a checked split (422 naming what is wrong)."""
        if self.versions is None:
            return None
        arms = [TrafficArm(version=arm.version, weight=arm.weight) for arm in self.versions]
        try:
            return TrafficSplit(arms=tuple(arms))
        except ValidationError as error:
            raise InvalidInput(
                str(error.errors()[0]["msg"]).removeprefix("Value error, ")
            ) from None


class AliasRead(BaseModel):
    """What an alias holds now: its main version (the largest share), the split, the shadow."""

    model: str
    alias: str
    version: int
    versions: list[TrafficArm] | None = None
    shadow: int | None = None

    @classmethod
    def of(cls, model: str, alias: str, policy: AliasPolicy) -> AliasRead:
        return cls(
            model=model,
            alias=alias,
            version=policy.version,
            versions=policy.split.arms if policy.split else None,
            shadow=policy.shadow,
        )


class AliasHistoryEntry(BaseModel):
    version: int
    versions: list[TrafficArm] | None = Field(
        default=None, description="The split it held then (null: one version)."
    )
    shadow: int | None = None
    assigned_at: datetime
    removed_at: datetime | None = Field(description="Null while the version still holds it.")


class TrafficRead(BaseModel):
    """How the serving alias routes, and how its shadow compares with what answered."""

    model: str
    alias: AliasRead | None = Field(description="The production alias (null: none).")
    shadows: list[ShadowStats] = Field(
        description="The alias's current shadow beside each version that answers through "
        "the alias (one per version of a split); empty when it has no shadow. A shadow "
        "promoted or replaced is not listed."
    )


class LogPartRead(BaseModel):
    """One Parquet file of the model's sampled requests."""

    id: int
    rows: int
    size_bytes: int = Field(description="The Parquet file's size (compressed).")
    raw_bytes: int | None = Field(
        description="Its columns uncompressed (what reading it unpacks). KILN_LOG_MAX_MB "
        "counts each part's larger of raw_bytes and size_bytes; null: recorded before it was "
        "measured (size_bytes counts)."
    )
    first_at: datetime
    last_at: datetime


class PromoteRequest(BaseModel):
    """Give ``version`` all of the alias's traffic, if the gate passes."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(
        ge=1, le=MAX_ID, strict=True, description="The candidate (a canary or the shadow)."
    )
    gate: Literal["labelled", "agreement", "manual"] = Field(
        description="'labelled': an exact one-sided sign test (McNemar's, for classes) on a "
        "labelled dataset must find the candidate better at 'alpha'; 'agreement': its "
        "shadow agreement's lower bound must reach 'min_agreement' over 'min_rows' rows; "
        "'manual': no test."
    )
    dataset_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        strict=True,
        description="The labelled dataset ('labelled' gate).",
    )
    alpha: float = Field(
        default=0.05,
        gt=0,
        lt=0.5,
        strict=True,
        allow_inf_nan=False,
        description="The tests' level.",
    )
    min_agreement: float = Field(default=0.95, gt=0, le=1, strict=True, allow_inf_nan=False)
    min_rows: int = Field(default=200, ge=1, le=10_000_000, strict=True)


class PromotionRead(BaseModel):
    """What the gate found, and whether the version now takes all the traffic."""

    promoted: bool
    gate: str
    reason: str
    evidence: dict[str, Any]
    alias: AliasRead

"""What ``POST /v1/jobs`` takes for a ``retrain`` job: a version of a model to learn again
on a newer dataset (its search re-run, or a fine-tune from it), and how to deploy the
result: as the serving alias's shadow, or as a canary with a share of the traffic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.enums import MAX_ID
from app.core.names import AliasStr, ModelNameStr

RETRAIN_KIND = "retrain"


class RetrainJobCreate(BaseModel):
    """Retrain a model's version on a newer dataset, compress it with the same chain, and
    deploy it beside the version that serves."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["retrain"] = Field(description="What the job does.")
    model: ModelNameStr = Field(description="The model to retrain; the new version joins it.")
    version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        strict=True,
        description="The version to retrain (default: the one serving requests that name "
        "no version: the production alias's main version, else the newest).",
    )
    dataset_id: int = Field(
        ge=1, le=MAX_ID, strict=True, description="The newer dataset to learn from."
    )
    mode: Literal["search", "fine_tune"] = Field(
        default="search",
        description="'search': run the version's search again (same families, space, "
        "budget, validation and compression) on the new dataset; 'fine_tune': train on "
        "from the version's own network (init_from), with the same budget and compression.",
    )
    deploy: Literal["shadow", "canary", "none"] = Field(
        default="shadow",
        description="'shadow': the new version sees a copy of the serving alias's traffic "
        "and answers no one; 'canary': it answers 'weight' percent of it; 'none': only "
        "registered. Promote it later with POST .../aliases/{alias}/promote.",
    )
    weight: int = Field(
        default=10, ge=1, le=99, strict=True, description="A canary's percent of traffic."
    )
    alias: AliasStr = Field(
        default="production",
        description="The alias to deploy beside (what serves requests naming no version).",
    )
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        strict=True,
        allow_inf_nan=False,
        description="The search's time budget instead of the version's own search budget.",
    )

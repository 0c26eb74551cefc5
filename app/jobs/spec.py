"""What a client may ask for in ``POST /v1/jobs``; validated before anything is stored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.registry import MODEL_NAME_PATTERN


class SearchSpec(BaseModel):
    """How to search: the algorithm and the budget."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["random"] = Field(
        default="random", description="Search algorithm.")
    max_trials: int = Field(default=8, ge=1, le=1000, description="Trials to run.")
    timeout_s: float | None = Field(default=None, gt=0, le=7 * 86400,
                                    description="Stop starting new trials after this long.")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for sampling, "
                      "splits and training; a seeded search is reproducible.")
    max_epochs: int = Field(default=60, ge=1, le=1000,
                            description="Upper bound of the epochs each trial may train.")


class JobCreate(BaseModel):
    """A search job: find, train and register the best network for a dataset."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["search"] = Field(description="What the job does.")
    dataset_id: int = Field(ge=1, description="Dataset to learn from.")
    model_name: str = Field(pattern=MODEL_NAME_PATTERN,
                            description="Registered model that receives the new version.")
    search: SearchSpec = Field(default_factory=SearchSpec)

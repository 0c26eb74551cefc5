"""What one worker process holds for one search job's trials."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import RDBStorage

from app.config import Settings
from app.datasets.service import DatasetArrays
from app.datasets.splits import SplitIndices
from app.jobs.spec import SearchSpec
from app.search.plan import SearchPlan, budget_of
from app.storage import ArtifactStore
from app.tables import Dataset
from app.training.models import NetworkConfig
from app.training.train import TrainData


class Infeasible(Exception):
    """The candidate breaks a constraint; the message says which and by how much."""


@dataclass
class SearchRun:
    """What one worker process needs to run trials of one search job."""

    settings: Settings
    job_id: int
    spec: SearchSpec
    plan: SearchPlan
    dataset: Dataset
    arrays: DatasetArrays
    splits: SplitIndices
    data: TrainData
    store: ArtifactStore
    worker: str
    storage: RDBStorage
    study: optuna.Study
    pruning: optuna.Study | None  # single-objective twin used to prune multi-objective trials
    architecture: NetworkConfig | None = None  # init_from: fixed architecture
    init_weights: bytes | None = None
    deadline: datetime | None = None  # no trial starts after it; a running one stops there
    trial_limit_s: float = math.inf  # wall time of one trial, enforced inside its epochs
    raw_sample: dict[str, Any] | None = None  # raw validation rows (tables with an encoding)
    folds: list[TrainData] | None = None  # cross-validation folds (small data), else holdout

    @property
    def tied_layers(self) -> bool:
        return self.spec.algorithm == "grid"

    @property
    def budget(self) -> int:
        """Trials to run: ``max_trials``, or fewer when a grid has fewer points."""
        return budget_of(self.spec, self.plan)



def checkpoint_key(job_id: int, number: int) -> str:
    return f"jobs/{job_id}/checkpoints/trial-{number}.pt"

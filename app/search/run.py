"""What one worker process holds for one search job's trials."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import optuna
from optuna.storages import RDBStorage

from app.contracts.networks import NetworkConfig
from app.core.config import Settings
from app.core.db import utcnow
from app.datasets.service import DatasetArrays
from app.datasets.splits import SplitIndices
from app.search.plan import SearchPlan, budget_of
from app.search.selection import Folds
from app.search.spec import SearchSpec
from app.storage import ArtifactStore
from app.tables import Dataset
from app.training.table_models import Infeasible as Infeasible  # raised by families
from app.training.train import TrainData

MAX_KEPT_PREDICTIONS = 4_000_000  # held-out values a trial stores (16 MB of float32)


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
    # The search's end (its start plus timeout_s): the finish is planned inside it.
    budget_end: datetime | None = None
    # Seconds before budget_end the trials stop, for the finish (``app.search.budget``).
    finish_reserve: Callable[[], float] = lambda: 0.0
    trial_limit_s: float = math.inf  # wall time of one trial, enforced inside its epochs
    raw_sample: dict[str, Any] | None = None  # raw validation rows (tables with an encoding)
    folds: Folds | None = None  # cross-validation folds (small data), else holdout
    device: str = "cpu"  # where this worker trains (KILN_DEVICE resolved)
    started_at: datetime | None = None  # when the job's worker claimed it
    groups_missed: int = 0  # data-parallel trials in a row whose members did not all come

    @property
    def deadline(self) -> datetime | None:
        """No trial starts after it, and a running one stops there: the budget's end less
        what the finish is planned to take."""
        if self.budget_end is None:
            return None
        return self.budget_end - timedelta(seconds=self.finish_reserve())

    def seconds_since_start(self) -> float:
        return 0.0 if self.started_at is None else (utcnow() - self.started_at).total_seconds()

    def trials_seconds(self) -> float | None:
        """The seconds the plan gives the trials: the budget less the finish's reserve."""
        deadline = self.deadline
        if deadline is None or self.started_at is None:
            return None
        return (deadline - self.started_at).total_seconds()

    @property
    def tied_layers(self) -> bool:
        return self.spec.algorithm == "grid"

    @property
    def transfers(self) -> bool:
        """init_from a network with other outputs: its body is reused under a new head."""
        return self.plan.space.network == "transfer"

    @property
    def scored_rows(self) -> np.ndarray:
        """The rows a trial's held-out predictions cover: every non-test row (out of fold)
        with folds, else the validation split."""
        return self.folds.rows if self.folds is not None else self.splits.validation

    @property
    def keeps_predictions(self) -> bool:
        """Whether trials store their held-out predictions, for an ensemble to be chosen
        from (one objective, and not too many values to keep per trial)."""
        width = len(self.dataset.class_labels or [None])
        return (
            self.spec.max_ensemble > 1
            and not self.plan.multi_objective
            and len(self.scored_rows) * width <= MAX_KEPT_PREDICTIONS
        )

    @property
    def budget(self) -> int:
        """Trials to run: ``max_trials``, or fewer when a grid has fewer points."""
        return budget_of(self.spec, self.plan)


def checkpoint_key(job_id: int, number: int, suffix: str = "pt") -> str:
    """Where a trial's fitted model is kept: torch weights, or a table model's own format."""
    return f"jobs/{job_id}/checkpoints/trial-{number}.{suffix}"


def predictions_key(job_id: int, number: int) -> str:
    return f"jobs/{job_id}/predictions/trial-{number}.npy"

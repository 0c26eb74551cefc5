"""A job as the server answers ``GET /v1/jobs/{id}``: its state, its progress, and the
result its kind made, typed (see ``modelkiln.wire`` for how tolerantly they are read)."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelkiln.serving import Serving
from modelkiln.wire import Answer

FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class JobProgress(Answer):
    """Work done out of the work planned, counted in ``unit`` (trials, steps, rows), and a
    search's scores and time. Servers before ``done``/``total`` sent the same counts as
    ``trials_done``/``trials_total``: ``Job.done`` and ``Job.total`` read either."""

    done: int | None = None
    total: int | None = None
    trials_done: int = 0
    trials_total: int = 0
    unit: str = "trials"
    best_value: float | None = None
    best_metric: str | None = None
    time_budget_s: float | None = None
    elapsed_s: float | None = None
    registered_value: float | None = None  # the registered version's score, in best_metric
    registered_version: int | None = None
    phase: str | None = None  # what a running job does now (a search: trials, refit, ...)


@dataclass(frozen=True)
class Objective(Answer):
    metric: str
    direction: str


@dataclass(frozen=True)
class LeftOut(Answer):
    """A model family a search's plan gave no trial, and why."""

    family: str
    reason: str


@dataclass(frozen=True)
class SearchPlan(Answer):
    """The plan a search ran (with the defaults a budget-only search chose)."""

    objectives: list[Objective] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    algorithm: str | None = None
    pruner: str | None = None
    parallelism: int | None = None


@dataclass(frozen=True)
class SearchSettings(Answer):
    """What a search job's spec asked for (the plan says what it ran)."""

    algorithm: str | None = None
    pruner: str | None = None
    parallelism: int | None = None


@dataclass(frozen=True)
class JobSpec(Answer):
    """The spec the job was submitted with; ``data`` holds all of it."""

    search: SearchSettings | None = None


@dataclass(frozen=True)
class Deployment(Answer):
    """How a retrain job put its version into service (as a shadow, a canary, or not)."""

    alias: str
    mode: str
    deployed: bool
    version: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Phase(Answer):
    """One phase of a finished job: seconds planned inside its budget and taken."""

    name: str
    took_s: float
    planned_s: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class FamilyShare(Answer):
    """One model family's share of a search: its complete trials and best score."""

    family: str
    trials: int
    best: float | None = None


@dataclass(frozen=True)
class Selection(Answer):
    """How a search chose its winner (the part the CLI shows)."""

    families: list[FamilyShare] = field(default_factory=list)
    refit_on_rows: int | None = None


@dataclass(frozen=True)
class JobResult(Answer):
    """What a job made once it succeeded, whichever its kind: the versions a search, a
    compression or a retrain registered (``version``: a search's winner; a batch
    prediction's: the version it used), the winner's held-out scores, the plan a search
    ran, what serves beside them, and a retrain's deployment. ``data`` holds all of it."""

    version: int | None = None
    versions: list[int] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # the numbers among them
    plan: SearchPlan | None = None
    serving: Serving | None = None
    deployment: Deployment | None = None
    phases: list[Phase] = field(default_factory=list)
    selection: Selection | None = None


@dataclass(frozen=True)
class Job(Answer):
    id: int
    kind: str
    status: str
    model_name: str | None = None
    dataset_id: int | None = None
    progress: JobProgress = field(default_factory=JobProgress)
    spec: JobSpec = field(default_factory=JobSpec)
    attempt: int | None = None
    max_attempts: int | None = None
    worker: str | None = None
    error: str | None = None
    result: JobResult | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def done(self) -> int:
        """Work done, in ``unit``."""
        progress = self.progress
        return progress.trials_done if progress.done is None else progress.done

    @property
    def total(self) -> int:
        """Work planned, in ``unit`` (0: not known, as for a search with a time budget)."""
        progress = self.progress
        return progress.trials_total if progress.total is None else progress.total

    @property
    def trials_done(self) -> int:
        """``done``, by the name it had first (whatever ``unit`` counts)."""
        return self.done

    @property
    def trials_total(self) -> int:
        """``total``, by the name it had first."""
        return self.total

    @property
    def unit(self) -> str:
        return self.progress.unit

    @property
    def best_value(self) -> float | None:
        return self.progress.best_value

    @property
    def best_metric(self) -> str | None:
        return self.progress.best_metric

    @property
    def time_budget_s(self) -> float | None:
        return self.progress.time_budget_s

    @property
    def elapsed_s(self) -> float | None:
        return self.progress.elapsed_s

    @property
    def registered_value(self) -> float | None:
        return self.progress.registered_value

    @property
    def registered_version(self) -> int | None:
        return self.progress.registered_version

    @property
    def registered_versions(self) -> list[int]:
        """The versions the job registered, from its result (none for a batch prediction,
        whose result names the version it used)."""
        if self.kind == "predict" or self.result is None:
            return []
        found = list(self.result.versions)
        if self.result.version is not None:
            found.insert(0, self.result.version)
        return list(dict.fromkeys(found))

    @property
    def serving(self) -> Serving | None:
        """What serves the model beside the version a search or compression registered
        (None: another kind, or a server from before it said so)."""
        return self.result.serving if self.result else None

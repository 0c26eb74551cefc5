"""What each kind of job stores as its result, typed. A worker's recorder builds one of
these; the runner stores it as the JSON it was built with (``stored_json``: the fields that
were set, nothing added), and every reader (the API, the dashboard, the report and Pareto
routes, batch outputs) parses it back with ``result_as`` instead of reading keys.

Results allow fields these models do not name, so a result written by another release
reads back whole; one that does not fit at all is passed on as the JSON it is."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class StoredResult(BaseModel):
    """A job's result, or a part of one."""

    model_config = ConfigDict(extra="allow")

    def stored_json(self) -> dict[str, Any]:
        """The JSON the job keeps: exactly the fields that were set."""
        return self.model_dump(mode="json", exclude_unset=True)


# -- compression -------------------------------------------------------------------------
class ReportRow(BaseModel):
    """One version in a compression report: the parent (first row) or a variant, measured
    on the same held-out rows in onnxruntime. Ratios are parent / variant (2.0: half the
    bytes, twice as fast); ``agreement`` is the share of test rows whose predicted class
    matches the parent's (regression: R² against the parent's values)."""

    model: str
    version: int
    role: str = Field(description="parent or variant.")
    method: str | None = None
    chain: list[str] = Field(default_factory=list)
    parent_version: int | None = None
    accuracy: float | None = None
    f1_macro: float | None = None
    rmse: float | None = None
    r2: float | None = None
    params: int | None = None
    nonzero_params: int | None = None
    sparsity: float | None = None
    size_bytes: int
    gzip_bytes: int
    latency_p50_ms: float
    latency_p95_ms: float
    latency_b64_p50_ms: float
    latency_b64_p95_ms: float
    agreement: float | None = None
    size_ratio: float
    gzip_ratio: float
    speedup: float
    speedup_b64: float
    accuracy_drop: float | None = Field(
        default=None, description="Accuracy points lost (regression: relative RMSE increase)."
    )
    smaller: bool | None = None
    faster: bool | None = None
    qualifies: bool | None = None
    not_recommended_because: str | None = None
    recommended: bool
    settings: dict[str, Any] | None = None
    details: dict[str, Any] | None = None


class SkippedChain(StoredResult):
    """A chain a search's compression left out: it cannot run on the winner found (a
    method that needs a network's weights, when trees won), and why."""

    chain: list[str]
    reason: str


class CompressionTable(StoredResult):
    """The comparison a compression stores: every version it made beside their parent,
    and the one it recommends under the accuracy budget (and the chains it skipped)."""

    model_name: str
    parent_version: int
    max_accuracy_drop: float
    prefer: str
    recommended_version: int
    reason: str
    rows: list[ReportRow]
    skipped: list[SkippedChain] | None = None


class CompressionFields(StoredResult):
    """What a compression adds to the result of the job that ran it (a compress job, or a
    search that compressed its winner)."""

    recommended_version: int | None = None
    recommendation_reason: str | None = None
    compression: CompressionTable | None = None


# -- search ------------------------------------------------------------------------------
class Objective(StoredResult):
    metric: str
    direction: Literal["maximize", "minimize"]


class LeftOut(StoredResult):
    """A model family a search's plan gave no trial, and why."""

    family: str
    reason: str


class PlanSummary(StoredResult):
    """The plan the search ran (with the defaults a budget-only search chose);
    ``parallelism`` is what was asked, ``trials_at_once`` the most that ran at one time."""

    objectives: list[Objective]
    pruning_metric: str | None = None
    network: str | None = None
    init_from: str | None = None
    algorithm: str | None = None
    pruner: str | None = None
    parallelism: int | None = None
    max_trials: int | None = None
    timeout_s: float | None = None
    max_ensemble: int | None = None
    trials_at_once: int | None = None
    families: list[str] | None = None
    left_out: list[LeftOut] | None = Field(
        default=None,
        description="Each model family the plan gave no trial, and why (the task, the "
        "data's shape, the spec, or a cheapest trial estimated above the whole budget).",
    )


class FamilyScore(StoredResult):
    """One model family's share of a search: complete trials and its best (the primary
    objective on the search's evidence: validation rows or out-of-fold)."""

    family: str
    trials: int
    best_trial: int | None = None
    best: float | None = None


class ReferenceScores(StoredResult):
    """Scores beside the winner's on the same evidence (validation rows, or the folds'
    mean): a constant prediction (the training rows' majority class or mean) and a linear
    model (the search's best linear trial, or one fitted for this reference)."""

    metric: str
    winner: float
    baseline: float
    linear: float | None = None
    linear_trial: int | None = None


class Selection(StoredResult):
    """How the winner was chosen, and how far ahead of the rest it really was."""

    validation: str
    validation_rows: int
    refit_on_rows: int | None = None
    refit_epochs: int | None = None
    winner_fold_std: float | None = None
    trials_within_noise: int | None = None
    ensemble: dict[str, Any] | None = None
    families: list[FamilyScore] | None = None
    reference: ReferenceScores | None = None


class PhaseTime(StoredResult):
    """One phase of a job's run: what it was planned to take and what it took (seconds),
    and why it departed from the plan, when it did."""

    name: str
    planned_s: float | None = None
    took_s: float
    note: str | None = None


class ParetoPoint(StoredResult):
    trial: int
    values: list[float]


class ServingNote(StoredResult):
    """What answers the model's requests that name no version once a job's versions are
    registered (a model's first version takes the ``production`` alias; later ones never
    move it), and the job's version beside it: each one's held-out metric as the registry
    stores it, each measured on its own test rows (``same_rows``: the same rows, when both
    were cut from one dataset with one seed), and the commands that would move the alias."""

    alias: str
    serving_version: int = Field(description="The alias's version (a split's largest share).")
    version: int | None = Field(
        default=None,
        description="The job's version compared: a search's winner, a compression's "
        "recommended variant (null: it recommended none).",
    )
    took_alias: bool = Field(description="The job's version took the alias (a first version).")
    metric: str | None = Field(default=None, description="accuracy, or rmse for a regressor.")
    value: float | None = Field(default=None, description="The job's version's metric.")
    serving_value: float | None = Field(
        default=None, description="The serving version's (null: none stored, an upload's)."
    )
    test_rows: int | None = None
    serving_test_rows: int | None = None
    same_rows: bool = False
    summary: str = Field(description="All of the above in a sentence or two.")
    promote_cli: str | None = None
    promote_curl: str | None = None


class SearchResult(CompressionFields):
    """The version(s) a search registered: the first is the winner (or the first of the
    Pareto front); ``metrics`` are the winner's, measured on its test rows; ``serving``:
    what serves the model now, beside the winner."""

    model_name: str
    version: int
    trial: int
    metrics: dict[str, Any]
    versions: list[int]
    plan: PlanSummary
    selection: Selection | None = None
    pareto: list[ParetoPoint] | None = None
    serving: ServingNote | None = None
    phases: list[PhaseTime] | None = Field(
        default=None,
        description="The job's phases in order (trials, refit, export, ...): seconds "
        "planned inside the budget and taken.",
    )

    def registered_score(self) -> float | None:
        """The first registered version's score in the first objective, on the evidence
        the trials were ranked on (an average's own, when an average won); None where the
        result does not record it."""
        validation = self.metrics.get("validation")
        metric = self.plan.objectives[0].metric if self.plan.objectives else None
        value = validation.get(metric) if isinstance(validation, dict) and metric else None
        return float(value) if isinstance(value, int | float) else None


class Deployment(StoredResult):
    """How a retrain job put its version into service: as the serving alias's shadow, as a
    canary with a share of the traffic, or not at all (and why not, when it could not)."""

    alias: str
    mode: Literal["shadow", "canary", "none"]
    version: int | None = None
    weight: int | None = None
    deployed: bool
    reason: str | None = None


class RetrainResult(SearchResult):
    """What a retrain job's search registered, and how its version was deployed."""

    source_version: int
    retrain_mode: Literal["search", "fine_tune"]
    deployment: Deployment


class CompressResult(CompressionFields):
    """The variants a compress job registered under the version it compressed, and what
    serves the model now beside the recommended one (``serving``)."""

    model_name: str
    parent_version: int
    versions: list[int]
    serving: ServingNote | None = None


# -- batch prediction --------------------------------------------------------------------
class OutputRef(StoredResult):
    """Where a batch prediction's output lies in the artifact store."""

    key: str
    format: str
    media_type: str
    sha256: str
    size_bytes: int


class PredictResult(StoredResult):
    """A batch prediction's output and what it cost."""

    output: OutputRef
    rows: int
    resumed_at_row: int = 0
    seconds: float | None = None
    rows_per_s: float | None = None
    peak_rss_mb: float | None = None
    rss_at_start_mb: float | None = None
    model: str
    version: int


# The union of every kind's result is not written here: ``app.kinds.JobResult`` derives it
# from the kinds the server runs (each kind names its model as ``JobKind.result_model``).
ResultT = TypeVar("ResultT", bound=StoredResult)


def result_as(model: type[ResultT], stored: dict[str, Any] | None) -> ResultT | None:
    """``stored`` parsed as ``model``; None when there is none, or when it does not fit
    (written by a release whose shape differs: the API then shows it as stored)."""
    if stored is None:
        return None
    try:
        return model.model_validate(stored)
    except ValidationError:
        return None

"""What ``POST /v1/jobs`` takes for a search job; validated before anything is stored
(rules that need the dataset or the registry are checked by ``app.search.submit``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.compression.spec import CompressionSpec
from app.contracts.enums import MAX_ID
from app.core.names import ModelNameStr
from app.jobs.spec import VersionRef
from app.training.families.registry import (
    FAMILIES,
    Family,
    default_families,
    default_network,
    listing,
)

SEARCH_KIND = "search"

Algorithm = Literal[
    "random", "grid", "tpe", "gp", "cmaes", "evolution", "hillclimb", "anneal", "nsga2"
]
Pruner = Literal["none", "median", "successive_halving", "hyperband"]
SearchMetric = Literal[
    "accuracy",
    "f1_macro",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "r2",
    "latency_ms",
    "size_bytes",
    "params",
    "peak_memory_mb",
    "energy_mj_per_1k_rows",
]


class ObjectiveSpec(BaseModel):
    """One thing to optimise; ``direction`` defaults to the metric's better side."""

    model_config = ConfigDict(extra="forbid")

    metric: SearchMetric
    direction: Literal["maximize", "minimize"] | None = None


class ConstraintSpec(BaseModel):
    """Hard limits; a candidate whose architecture alone breaks one is never trained. Each
    is ``max_<metric>``, or the same limit written ``{"<metric>": {"max": ...}}``."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _limits_by_metric(cls, given: Any) -> Any:
        return limits_by_metric(given)

    max_latency_ms: float | None = Field(
        strict=True, allow_inf_nan=False, default=None, gt=0, description="p50 at batch 1."
    )
    max_size_bytes: int | None = Field(
        strict=True, default=None, gt=0, description="ONNX file size."
    )
    max_params: int | None = Field(
        strict=True, default=None, gt=0, description="Trainable parameters."
    )
    max_peak_memory_mb: float | None = Field(
        strict=True,
        allow_inf_nan=False,
        default=None,
        gt=0,
        description="Memory one run at batch 1 takes (onnxruntime without its arena).",
    )
    max_energy_mj_per_1k_rows: float | None = Field(
        strict=True,
        allow_inf_nan=False,
        default=None,
        gt=0,
        description="Millijoules per 1,000 rows run in batches of 256 (RAPL, or an estimate "
        "from CPU time: the trial's metrics say which).",
    )

    @property
    def on_served_file(self) -> bool:
        """Whether a limit needs the trial's file as served (all but max_params)."""
        return any(
            value is not None
            for value in (
                self.max_latency_ms,
                self.max_size_bytes,
                self.max_peak_memory_mb,
                self.max_energy_mj_per_1k_rows,
            )
        )


# Metrics a constraint may limit in the ``{"<metric>": {"max": ...}}`` form.
LIMITED_METRICS = ("latency_ms", "size_bytes", "params", "peak_memory_mb", "energy_mj_per_1k_rows")


def limits_by_metric(given: Any) -> Any:
    """``search.constraints`` with each ``{"<metric>": {"max": value}}`` written as
    ``max_<metric>``; anything else as given (the fields' own checks judge it)."""
    if not isinstance(given, dict):
        return given
    limits = dict(given)
    for metric in LIMITED_METRICS:
        if metric not in limits:
            continue
        entry = limits.pop(metric)
        if not isinstance(entry, dict) or set(entry) != {"max"}:
            raise ValueError(f'{metric}: expected {{"max": <number>}}')
        limit = entry["max"]
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not limit > 0:
            raise ValueError(f"{metric}.max: expected a number above 0, got {limit!r}"[:200])
        if f"max_{metric}" in limits:
            raise ValueError(f"{metric}: given twice (also as max_{metric})")
        limits[f"max_{metric}"] = limit
    return limits


class InitFrom(VersionRef):
    """A registered version whose torch weights every trial starts from (fine-tuning)."""

    version: int = Field(strict=True, ge=1, le=MAX_ID)


def _families_description() -> str:
    """``search.families``' description, from the registered families."""
    rows, images = default_families("rows"), default_families("images")
    return (
        f"Model families to search: {listing()}, on the same encoded features and served "
        "behind the same preprocessing. Several: each trial picks one (the sampler learns "
        "which pays), cheapest first. Default: every family that fits the data for a search "
        f"given only timeout_s (tables: {', '.join(rows)}; images: {', '.join(images)}), "
        f"else the network family ({default_network('rows').name}, or "
        f"{default_network('images').name} for image-shaped rows)."
    )


class SearchSpec(BaseModel):
    """How to search: algorithm, early stopping, space, objectives, budget, parallelism."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Algorithm = Field(default="random", description="Search algorithm.")
    pruner: Pruner = Field(default="none", description="Early stopping of lagging trials.")
    max_trials: int = Field(strict=True, default=8, ge=1, le=1000, description="Trials to run.")
    timeout_s: float | None = Field(
        strict=True,
        allow_inf_nan=False,
        default=None,
        gt=0,
        le=30 * 86400,
        description="Wall time for trials from the job's start: "
        "no trial starts after it and a running one is stopped "
        "(even inside an epoch); the winner is then registered. "
        "At most the server's KILN_MAX_JOB_S (default: 90% of "
        "it).",
    )
    trial_timeout_s: float | None = Field(
        strict=True,
        allow_inf_nan=False,
        default=None,
        gt=0,
        le=30 * 86400,
        description="Wall time of one trial; a trial still "
        "training then is stopped and failed. At most the "
        "server's KILN_MAX_TRIAL_S (its default).",
    )
    seed: int = Field(
        strict=True,
        default=0,
        ge=0,
        le=2**31 - 1,
        description="Seed for sampling, "
        "splits and training; a seeded search with parallelism 1 is "
        "reproducible.",
    )
    families: list[Family] | None = Field(
        default=None,
        min_length=1,
        max_length=len(FAMILIES),
        description=_families_description(),
    )
    max_epochs: int = Field(
        strict=True,
        default=60,
        ge=1,
        le=1000,
        description="Upper bound of the epochs each trial may train.",
    )
    parallelism: int = Field(
        strict=True,
        default=1,
        ge=1,
        le=32,
        description="Trials run at once, each on its own worker process (on any machine).",
    )
    data_parallel: int = Field(
        strict=True,
        default=1,
        ge=1,
        le=16,
        description="Worker processes that "
        "train each trial together (DistributedDataParallel: each "
        "computes a share of every batch), for datasets whose epochs "
        "one process trains too slowly. Trials scored by holdout only "
        "(cross-validation trains its folds in one process). A trial "
        "whose helpers do not all come within KILN_DATA_PARALLEL_JOIN_S "
        "trains alone; its metrics say how many processes trained it.",
    )
    validation: Literal["auto", "holdout", "cv"] = Field(
        default="auto",
        description="How trials are scored: 'cv' scores each on 5-fold "
        "cross-validation over the non-test rows and refits the winner on all of them; "
        "'holdout' on the validation split; 'auto': cv up to 2,000 non-test rows, and "
        "for a search given only timeout_s also up to 20,000 rows, when rows are at most "
        "100 and rows x source columns at most 2,800 per second of the budget.",
    )
    refit: Literal["full", "selection_only"] = Field(
        default="full",
        description="What the served model is fitted on once the winner is chosen: 'full' "
        "(every labelled row, test rows included; the held-out figures the registry "
        "reports come from the same configuration fitted without the test rows, and say "
        "so) or 'selection_only' (the non-test rows only: the served model is the one "
        "the test rows scored).",
    )
    max_ensemble: int = Field(
        strict=True,
        default=1,
        ge=1,
        le=10,
        description="Most networks the registered model may average: "
        "the best k trials (k up to this) compete with the single best on the same held-out "
        "predictions, and the better is registered. 1 (the default, except for a search "
        "given only timeout_s: 5) registers one network. Considered for one quality "
        "objective, no constraints, and no compression chain that needs torch weights.",
    )
    max_retries: int = Field(
        strict=True,
        default=1,
        ge=0,
        le=10,
        description="Times a trial whose worker died (no heartbeat) is run again.",
    )
    objectives: list[ObjectiveSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="Default: accuracy "
        "(classification) or rmse (regression). Several give a Pareto front.",
    )
    constraints: ConstraintSpec = Field(default_factory=ConstraintSpec)

    space: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the default "
        'space: a value, {"choices": [...]} or (numbers) {"low", "high", '
        '"log"} per dimension.',
    )
    warm_start_job: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=MAX_ID,
        description="Try the best configurations of this earlier job first.",
    )
    init_from: InitFrom | None = Field(
        default=None,
        description="Fine-tune from this version's weights (its architecture is kept).",
    )


class SearchJobCreate(BaseModel):
    """A search job: find, train and register the best network for a dataset (and, with
    ``compression``, compress the winner)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["search"] = Field(description="What the job does.")
    dataset_id: int = Field(strict=True, ge=1, le=MAX_ID, description="Dataset to learn from.")
    model_name: ModelNameStr = Field(
        description="Registered model that receives the new version(s)."
    )
    search: SearchSpec = Field(default_factory=SearchSpec)
    compression: CompressionSpec | None = Field(
        default=None,
        description="Compress the winner (with several objectives: the "
        "first version of the Pareto front) into variants registered next to it.",
    )


SEARCH_JOB_KEY = "search_job"  # where a kind that runs a search (retrain) stores that search


def stored_search(spec: Mapping[str, Any]) -> SearchJobCreate:
    """The search a stored job spec runs: a search job's own spec, or the one another kind
    (``retrain``) keeps under ``search_job``."""
    return SearchJobCreate.model_validate(spec.get(SEARCH_JOB_KEY, spec))

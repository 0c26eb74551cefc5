"""A job's search plan: the space after overrides, the objectives with their directions,
the constraints. Built from the spec and the dataset, both at submit time (so mistakes get
a 422 naming the path) and in the worker. No torch here: the gateway uses it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.core.errors import InvalidInput
from app.evaluation.names import COST_METRICS, HIGHER_IS_BETTER, default_metric, searchable_for
from app.search.space import SearchSpace, apply_overrides, data_shape, default_space
from app.search.spec import ConstraintSpec, SearchSpec
from app.search.strategy import MULTI_OBJECTIVE
from app.tables import Dataset, ModelVersion
from app.training.families.registry import (
    FAMILIES,
    NETWORK_FAMILIES,
    Family,
    family_named,
)
from app.training.families.registry import default_families as registered_defaults

# Non-test rows up to which trials are cross-validated (``app.search.selection`` says why).
CV_MAX_ROWS = 2_000
# A budget-only search cross-validates a larger table when its budget allows: at most this
# many cells (rows x source columns) per second of budget and CV_BUDGET_MAX_ROWS rows.
# FLAML's rule of thumb (10M cells an hour): selecting among hundreds of cheap trials on
# one holdout split rewards the split's noise; five folds do not.
CV_CELLS_PER_SECOND = 2_800
# ... and at most this many non-test rows per second of budget: a 5-fold trial fits about
# four times the non-test rows, and what a trial costs grows with rows whatever the
# columns (an MLP epoch: 3-4 us a row for the smallest network, about 34 us for three
# 256-wide layers; a default LightGBM fit 0.3-0.7 ms a row at 50 columns, one core of
# the 2-core machine). At 60 s that is 6,000 rows: a 9,000-row table (gapminder) folded
# got two trials in a minute; on the holdout, tens.
CV_ROWS_PER_SECOND = 100
# Above 20,000 non-test rows the validation split (3,000+ rows) ranks within about half a
# point of accuracy, and early trials fit on a subsample instead (``app.search.schedule``,
# LARGE_TABLE_ROWS): folds would cost five fits of every row for little less noise.
CV_BUDGET_MAX_ROWS = 20_000
# A search given only a time budget: trials until the time is spent, two at a time.
BUDGET_ONLY_TRIALS = 1_000
BUDGET_ONLY_PARALLELISM = 2
BUDGET_ONLY_ENSEMBLE = 5


# Costs of a trial's file as served: measured only when an objective or a constraint
# names one (the footprint's in a child process of its own, ``app.evaluation.footprint``).
FOOTPRINT_METRICS = ("peak_memory_mb", "energy_mj_per_1k_rows")
SERVED_METRICS = ("latency_ms", "size_bytes", *FOOTPRINT_METRICS)


@dataclass(frozen=True)
class Objective:
    """A metric and which way is better."""

    metric: str
    maximize: bool

    @property
    def direction(self) -> str:
        return "maximize" if self.maximize else "minimize"


@dataclass(frozen=True)
class SearchPlan:
    """Everything a worker needs to know about how to search, resolved once."""

    space: SearchSpace
    objectives: list[Objective]
    constraints: ConstraintSpec
    pruning_metric: str  # the quality metric trials report every epoch

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def needs_export(self) -> bool:
        """Whether trials must be exported to ONNX to be scored or checked."""
        wanted = {objective.metric for objective in self.objectives}
        return bool(wanted & set(SERVED_METRICS)) or self.constraints.on_served_file

    @property
    def needs_footprint(self) -> bool:
        """Whether trials' memory and energy must be measured (a child process each)."""
        wanted = {objective.metric for objective in self.objectives}
        limits = self.constraints
        return bool(wanted & set(FOOTPRINT_METRICS)) or (
            limits.max_peak_memory_mb is not None or limits.max_energy_mj_per_1k_rows is not None
        )


def _objectives(spec: SearchSpec, task: str) -> list[Objective]:
    if not spec.objectives:
        return [Objective(default_metric(task), HIGHER_IS_BETTER[default_metric(task)])]
    applies = searchable_for(task)
    objectives: list[Objective] = []
    for index, entry in enumerate(spec.objectives):
        path = f"search.objectives[{index}].metric"
        if entry.metric not in applies:
            raise InvalidInput(f"{path}: {entry.metric} does not apply to a {task} dataset")
        if any(objective.metric == entry.metric for objective in objectives):
            raise InvalidInput(f"{path}: {entry.metric} is listed twice")
        maximize = (
            HIGHER_IS_BETTER[entry.metric]
            if entry.direction is None
            else entry.direction == "maximize"
        )
        objectives.append(Objective(entry.metric, maximize))
    return objectives


def make_plan(
    spec: SearchSpec,
    dataset: Dataset,
    *,
    fixed_architecture: bool = False,
    transfer_layers: int | None = None,
) -> SearchPlan:
    """The plan for ``spec`` on ``dataset``; raises InvalidInput naming the path at fault.
    ``transfer_layers``: init_from a network with other outputs, whose body has that many
    weight layers."""
    objectives = _objectives(spec, dataset.task)
    if len(objectives) > 1 and spec.algorithm not in MULTI_OBJECTIVE:
        raise InvalidInput(
            f"search.algorithm: {spec.algorithm} optimises one objective; with "
            f"{len(objectives)} objectives use one of {list(MULTI_OBJECTIVE)}"
        )
    families = _families(spec, dataset, fixed_architecture)
    space = apply_overrides(
        default_space(
            dataset.input_shape,
            spec.max_epochs,
            searched_architecture=not fixed_architecture,
            transfer_layers=transfer_layers,
            families=families,
            table=dataset.encoding is not None,
            category_codes=bool(dataset.encoding and dataset.encoding.category_codes()),
        ),
        spec.space,
    )
    if spec.algorithm == "grid" and space.grid_size() > spec.max_trials:
        raise InvalidInput(
            f"search.algorithm: the grid has {space.grid_size()} points, more "
            f"than max_trials {spec.max_trials}; fix dimensions in search.space "
            "or raise max_trials"
        )
    quality = [o.metric for o in objectives if o.metric not in COST_METRICS]
    return SearchPlan(
        space=space,
        objectives=objectives,
        constraints=spec.constraints,
        pruning_metric=quality[0] if quality else default_metric(dataset.task),
    )


def image_rows(input_shape: list[int] | None) -> bool:
    """Whether a dataset's rows are images (channels, height, width): what a CNN reads."""
    return data_shape(input_shape) == "images"


def default_families(input_shape: list[int] | None) -> list[Family]:
    """Every family searched by default on the data's shape (each family says where:
    ``ModelFamily.default_on``): a CNN for images, else a network, trees and a linear
    model of the table's features."""
    return registered_defaults(data_shape(input_shape))


# What a family that runs only on one shape of data needs, as its error says.
SHAPE_NEEDS = {
    "images": "image-shaped rows (a dataset uploaded with input_shape [channels, height, width])",
    "rows": "flat rows",
}


def _or(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _check_fits_data(families: tuple[Family, ...], dataset: Dataset) -> None:
    """Each named family learns the dataset's task on data of its shape."""
    shape = data_shape(dataset.input_shape)
    for name in families:
        family = family_named(name)
        if dataset.task not in family.tasks:
            raise InvalidInput(f"search.families: {name} does not learn {dataset.task}")
        if shape not in family.runs_on:
            needs = " or ".join(SHAPE_NEEDS[need] for need in sorted(family.runs_on))
            others = [other for other, f in FAMILIES.items() if f.applies(dataset.task, shape)]
            raise InvalidInput(f"search.families: {name} needs {needs}; use {_or(others)}")


def _families(spec: SearchSpec, dataset: Dataset, fixed_architecture: bool) -> tuple[Family, ...]:
    """``search.families`` checked against the data and the rest of the spec."""
    if spec.families is None:
        return ()
    families = tuple(Family(name) for name in spec.families)
    if len(set(families)) < len(families):
        raise InvalidInput("search.families: a family is listed twice")
    _check_fits_data(families, dataset)
    if sum(1 for name in families if name in NETWORK_FAMILIES) > 1:
        raise InvalidInput(
            "search.families: choose one network family, "
            + _or([str(network) for network in NETWORK_FAMILIES])
        )
    if fixed_architecture and (len(families) != 1 or families[0] not in NETWORK_FAMILIES):
        raise InvalidInput(
            "search.families: init_from fine-tunes a network; leave families out, or name "
            "only that network's family"
        )
    if spec.algorithm == "grid" and len(families) > 1:
        raise InvalidInput(
            "search.families: a grid search covers one family's grid; name one family, or "
            "use another algorithm (tpe learns which family pays)"
        )
    return () if fixed_architecture else families


def uses_folds(validation: str, non_test_rows: int) -> bool:
    """Whether trials are scored on folds (``validation``: auto, cv or holdout)."""
    if validation == "auto":
        return non_test_rows <= CV_MAX_ROWS
    return validation == "cv"


def with_budget_defaults(
    spec: SearchSpec,
    non_test_rows: int,
    worker_processes: int = 0,
    input_shape: list[int] | None = None,
    columns: int | None = None,
) -> SearchSpec:
    """A search given ``timeout_s`` and no ``max_trials`` runs until its time is spent:
    TPE (Optuna's default of 10 random start-up trials, then a model of what worked), two
    trials at a time (no more than the ``worker_processes`` that ``kiln serve`` runs, when
    it runs them: one process runs one trial at a time), a pruner that fits the validation
    (median stopping on folds, as pruners see the first fold; Hyperband on a large
    holdout), an average of up to five of the best models when it beats the best one,
    every model family that fits the data (not with init_from), and cross-validation of a
    table the budget can afford to (``columns``: its source columns; see
    ``CV_CELLS_PER_SECOND`` and ``CV_ROWS_PER_SECOND``). What is given stays."""
    given = spec.model_fields_set
    if "timeout_s" not in given or "max_trials" in given:
        return spec
    validation = spec.validation
    if (
        "validation" not in given
        and columns is not None
        and spec.timeout_s is not None
        and non_test_rows <= min(CV_BUDGET_MAX_ROWS, CV_ROWS_PER_SECOND * spec.timeout_s)
        and non_test_rows * columns <= CV_CELLS_PER_SECOND * spec.timeout_s
    ):
        validation = "cv"
    folds = uses_folds(validation, non_test_rows)
    parallelism = BUDGET_ONLY_PARALLELISM
    if worker_processes:
        parallelism = min(parallelism, worker_processes)
    chosen: dict[str, Any] = {
        "max_trials": BUDGET_ONLY_TRIALS,
        "algorithm": "tpe",
        "parallelism": parallelism,
        "pruner": "median" if folds else "hyperband",
        "max_ensemble": BUDGET_ONLY_ENSEMBLE,
        "validation": validation,
    }
    if spec.init_from is None:
        chosen["families"] = default_families(input_shape)
    return spec.model_copy(
        update={name: value for name, value in chosen.items() if name not in given}
    )


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The most of these (start, end) spans that overlap at one moment."""
    events = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans],
        key=lambda event: (event[0], event[1]),
    )
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def plan_summary(plan: SearchPlan, spec: SearchSpec) -> dict[str, Any]:
    """What the job's result reports about its plan (with the defaults a budget-only
    search chose); ``parallelism`` is what was asked, the job adds ``trials_at_once``, the
    most trials that really ran at one time."""
    return {
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in plan.objectives],
        "pruning_metric": plan.pruning_metric,
        "network": plan.space.network,
        "families": [str(family) for family in plan.space.searched],
        "init_from": None
        if spec.init_from is None
        else ("transfer: new head" if plan.space.network == "transfer" else "fine-tune"),
        "algorithm": spec.algorithm,
        "pruner": spec.pruner,
        "parallelism": spec.parallelism,
        "max_trials": spec.max_trials,
        "timeout_s": spec.timeout_s,
        "max_ensemble": spec.max_ensemble,
    }


def budget_of(spec: SearchSpec, plan: SearchPlan) -> int:
    """Trials a search runs: ``max_trials``, or fewer when a grid has fewer points."""
    if spec.algorithm == "grid":
        return min(spec.max_trials, plan.space.grid_size())
    return spec.max_trials


def transfer_layers(source: ModelVersion, dataset: Dataset) -> int | None:
    """For ``init_from`` ``source`` on ``dataset``: None when the network keeps its output
    layer (same task and classes: fine-tuning), else the count of its body's weight layers
    (a new head is learnt: transfer)."""
    architecture = source.config.architecture if source.config else None
    same_outputs = source.task == dataset.task and (
        list(source.class_labels or []) == list(dataset.class_labels or [])
    )
    if same_outputs:
        return None
    return architecture.body_layers if architecture is not None else 0

"""Which families a search's plan gives no trial, and why, said up front in the plan's
summary: a family that does not learn the task or read the data's shape, one the spec does
not ask for, and a planned one whose cheapest trial is estimated above
``LEFT_OUT_SHARE`` of the budget (from per-family costs measured on the 2-core machine the
search's budget targets). The scheduler (``app.search.schedule``) gives such a family no
trial, and reads the same estimates as a first trial's expected seconds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.search.schedule import LARGE_TABLE_ROWS, SUBSAMPLE_ROWS
from app.search.spec import SearchSpec
from app.training.families.base import DataShape
from app.training.families.registry import FAMILIES, default_families

# A planned family is left out when its cheapest trial is estimated above this share of
# the budget: above the whole of it, since its estimate is padded (``SLACK``) and a family
# left out on an estimate is a family given no chance (LightGBM on a 30 s search of
# scikit-learn's digits was, at half the budget).
LEFT_OUT_SHARE = 1.0
TRAIN_SHARE = 0.7 / 0.85  # training rows among the non-test rows (app.datasets.splits)


@dataclass(frozen=True)
class TableSize:
    """What the plan note reads of a dataset: its task and shape, its non-test rows, the
    features a model reads (encoded), its classes (1: values) and its rows' shape."""

    task: str
    shape: DataShape
    non_test_rows: int
    features: int
    outputs: int
    pixels: int = 0  # an image's values (channels x height x width); 0: flat rows


@dataclass(frozen=True)
class LeftOutFamily:
    """A registered family the plan gives no trial, and why (for the plan's summary)."""

    family: str
    reason: str


@dataclass(frozen=True)
class TrialCost:
    """Seconds of a family's cheapest trial on one core of the 2-core machine these were
    measured on (times ``SLACK`` for a loaded one): per training row and feature (per
    output too when ``per_output``), per epoch for a network, plus ``overhead_s``."""

    per_cell_s: float
    per_output: bool = False
    epochs: bool = False
    overhead_s: float = 1.0


SLACK = 2.0
# Measured: LightGBM's default (early stopped within 1,000 rounds) on 10,000 x 50: 5.5 s
# binary, 7.2 s with 3 classes; logistic regression 0.35 s; extra trees 2.5 s; an MLP of
# one 64-wide layer 0.044 s an epoch (200 features: 0.053 s); the smallest CNN about 1e-7 s
# per pixel an epoch.
TRIAL_COSTS: dict[str, TrialCost] = {
    "gbdt": TrialCost(1.1e-5, per_output=True),
    "linear": TrialCost(1e-6),
    "forest": TrialCost(5e-6),
    "mlp": TrialCost(1e-7, epochs=True),
    "cnn": TrialCost(1e-7, epochs=True),
}
NETWORK_MIN_EPOCHS = 10  # a network's fewest epochs (``training_space``: min(10, max_epochs))
NETWORK_ROW_S = 4e-6  # an MLP epoch's cost per row whatever its features


def training_rows(size: TableSize) -> int:
    """The rows a first trial fits on: the training split, or the subsample of a large
    table."""
    rows = round(size.non_test_rows * TRAIN_SHARE)
    return min(rows, SUBSAMPLE_ROWS) if size.non_test_rows > LARGE_TABLE_ROWS else rows


def first_trial_seconds(family: str, size: TableSize, max_epochs: int) -> float | None:
    """The estimated seconds of ``family``'s cheapest first trial (None: no estimate)."""
    cost = TRIAL_COSTS.get(family)
    if cost is None:
        return None
    rows = training_rows(size)
    cells = rows * (size.pixels or size.features)
    seconds = cells * cost.per_cell_s * (max(size.outputs - 1, 1) if cost.per_output else 1)
    if cost.epochs:
        seconds = (seconds + rows * NETWORK_ROW_S) * min(NETWORK_MIN_EPOCHS, max_epochs)
    return (seconds + cost.overhead_s) * SLACK


def left_out_families(
    spec: SearchSpec, planned: Sequence[str], size: TableSize
) -> list[LeftOutFamily]:
    """Every registered family the plan gives no trial (``planned``: the families the
    plan's space searches), and why: the task, the data's shape, the spec, or a cheapest
    trial estimated above ``LEFT_OUT_SHARE`` of ``timeout_s``."""
    notes: list[LeftOutFamily] = []
    defaults = set(default_families(size.shape))
    estimates = {name: first_trial_seconds(name, size, spec.max_epochs) for name in planned}
    # The search keeps at least one planned family: the one estimated cheapest.
    kept = min(planned, key=lambda name: estimates[name] or 0.0, default=None)
    for name, family in FAMILIES.items():
        if name in planned:
            estimate = estimates[name]
            budget = spec.timeout_s
            limit = None if budget is None else LEFT_OUT_SHARE * budget
            if name != kept and estimate is not None and limit is not None and estimate > limit:
                notes.append(
                    LeftOutFamily(
                        name,
                        f"its cheapest trial on {training_rows(size):,} rows x "
                        f"{size.features:,} features is estimated at {estimate:.0f} s, more "
                        f"than timeout_s allows ({limit:g} s)",
                    )
                )
        elif size.task not in family.tasks:
            notes.append(LeftOutFamily(name, f"it does not learn {size.task}"))
        elif size.shape not in family.runs_on:
            needs = "image-shaped rows" if "images" in family.runs_on else "flat rows"
            notes.append(LeftOutFamily(name, f"it reads {needs}; this dataset's rows are not"))
        elif spec.init_from is not None:
            notes.append(LeftOutFamily(name, "init_from fine-tunes the registered network"))
        elif spec.families is not None:
            notes.append(LeftOutFamily(name, "search.families does not name it"))
        elif name not in defaults:
            notes.append(LeftOutFamily(name, "searched only when search.families names it"))
        else:
            notes.append(
                LeftOutFamily(
                    name,
                    "search.families names none: the network alone is searched (a search "
                    "given only timeout_s searches every family that fits)",
                )
            )
    return notes

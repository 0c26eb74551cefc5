"""The search space: a default chosen from the dataset (an MLP for tabular rows, a small CNN
when the dataset has an ``input_shape``) plus training parameters, overridable per job.

Overrides (``search.space``) map a dimension name to a fixed value (``"batch_size": 64``), a
list of choices (``{"choices": ["relu", "gelu"]}``) or, for a number, a range (``{"low": 32,
"high": 128, "log": true}``): whatever a dimension's default form, any of these may replace
it (an integer range for ``batch_size``, choices of layer counts), so code that reads a
dimension must read every form (``app.search.size``). ``width`` (MLP) and ``channels`` (CNN)
apply to every layer or block.

Several model families (``search.families``) share one space: the ``family`` parameter picks
one per trial, and only that family's dimensions are sampled (``gbdt_*``, ``linear_*``, or
the network's and its training's, unprefixed as before)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import optuna

from app.contracts.enums import TABLE_FAMILIES, Family
from app.core.errors import InvalidInput

Kind = Literal["int", "float", "categorical"]


@dataclass(frozen=True)
class Dimension:
    """One searchable parameter."""

    kind: Kind
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    per_layer: bool = False  # expands to name_0, name_1, ... (one per layer or block)
    minimum: float = 0.0  # bounds an override may not cross
    maximum: float = math.inf
    open_choices: bool = False  # categorical of integers: other integers may be chosen too

    def describe(self) -> dict[str, Any]:
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "type": self.kind}


def _int(
    low: int,
    high: int,
    log: bool = False,
    per_layer: bool = False,
    minimum: float = 1,
    maximum: float = 4096,
) -> Dimension:
    return Dimension("int", low, high, log, per_layer=per_layer, minimum=minimum, maximum=maximum)


def _float(
    low: float, high: float, log: bool = False, minimum: float = 0.0, maximum: float = math.inf
) -> Dimension:
    return Dimension("float", low, high, log, minimum=minimum, maximum=maximum)


def _choice(*choices: Any) -> Dimension:
    return Dimension("categorical", choices=choices)


MLP_SPACE: dict[str, Dimension] = {
    "n_layers": _int(1, 4, maximum=8),
    "width": _int(16, 512, log=True, per_layer=True),
    "activation": _choice("relu", "gelu", "silu", "tanh"),
    "dropout": _float(0.0, 0.5, maximum=0.9),
    "batch_norm": _choice(False, True),
}
CNN_SPACE: dict[str, Dimension] = {
    "n_blocks": _int(1, 3, maximum=6),
    "channels": _int(8, 64, log=True, per_layer=True),
    "kernel": _choice(3, 5),
    "pooling": _choice("max", "avg", "none"),
    "head_width": _int(16, 256, log=True),
    "activation": _choice("relu", "gelu", "silu", "tanh"),
    "dropout": _float(0.0, 0.5, maximum=0.9),
    "batch_norm": _choice(False, True),
}
# A table's MLP also searches how its first layer reads the features (``TableFront``):
# input scaling, per-feature embeddings of numbers (none, periodic or piecewise-linear;
# width, frequencies or bins, and the periodic frequencies' spread), and an embedding of
# each many-valued category (width 0: none).
TABLE_MLP_SPACE: dict[str, Dimension] = {
    "scaling": _choice("standard", "robust"),
    "numeric_embedding": _choice("none", "periodic", "piecewise"),
    "embedding_width": Dimension(
        "categorical", choices=(4, 8, 16), open_choices=True, minimum=1, maximum=256
    ),
    "embedding_size": Dimension(
        "categorical", choices=(4, 8, 16), open_choices=True, minimum=2, maximum=128
    ),
    "embedding_sigma": _float(0.01, 3.0, log=True, minimum=1e-4, maximum=100.0),
    "category_width": Dimension(
        "categorical", choices=(0, 4, 8), open_choices=True, minimum=0, maximum=256
    ),
}
LAYER_COUNT = {"width": "n_layers", "channels": "n_blocks"}
# LightGBM's own space: rounds is the most it boosts, early stopping on the validation rows
# (or the first fold) decides how many it keeps, and a refit repeats that count.
GBDT_SPACE: dict[str, Dimension] = {
    "gbdt_num_leaves": _int(4, 256, log=True, minimum=2, maximum=131_072),  # LightGBM: > 1
    "gbdt_max_depth": Dimension(
        "categorical", choices=(-1, 4, 6, 8, 12), open_choices=True, minimum=-1, maximum=64
    ),
    "gbdt_learning_rate": _float(0.01, 0.3, log=True, minimum=1e-6, maximum=1.0),
    "gbdt_min_child_samples": _int(2, 100, log=True, maximum=100_000),
    "gbdt_subsample": _float(0.5, 1.0, minimum=0.01, maximum=1.0),
    "gbdt_colsample": _float(0.4, 1.0, minimum=0.01, maximum=1.0),
    "gbdt_reg_lambda": _float(1e-8, 10.0, log=True, maximum=1e4),
    "gbdt_reg_alpha": _float(1e-8, 10.0, log=True, maximum=1e4),
    "gbdt_rounds": _int(100, 2000, log=True, maximum=20_000),
}
LINEAR_SPACE: dict[str, Dimension] = {
    "linear_c": _float(1e-3, 100.0, log=True, minimum=1e-9, maximum=1e9),
}
FAMILY_SPACES = {Family.GBDT: GBDT_SPACE, Family.LINEAR: LINEAR_SPACE}
FAMILY_KEY = "family"  # the parameter that picks a trial's family


def transfer_space(body_layers: int) -> dict[str, Dimension]:
    """What a transfer from a registered network tunes, besides training: how many of its
    body's layers stay frozen (all of them: only the new head learns), how much slower the
    rest of the body learns than the head, and epochs of the head alone first."""
    return {
        "frozen_layers": _int(0, body_layers, minimum=0, maximum=body_layers),
        "body_lr_factor": _float(0.01, 1.0, log=True, minimum=1e-6, maximum=1.0),
        "head_warmup_epochs": _int(0, 5, minimum=0, maximum=100),
    }


def training_space(max_epochs: int) -> dict[str, Dimension]:
    """The training parameters every search tunes."""
    return {
        "optimizer": _choice("sgd", "adam", "adamw"),
        "learning_rate": _float(1e-4, 3e-2, log=True, minimum=1e-9, maximum=10.0),
        "weight_decay": _float(1e-6, 1e-2, log=True, maximum=1.0),
        "l1": _float(0.0, 1e-5, maximum=1.0),
        "batch_size": Dimension(
            "categorical", choices=(32, 64, 128, 256), open_choices=True, minimum=1, maximum=65_536
        ),
        "epochs": _int(min(10, max_epochs), max_epochs, maximum=max_epochs),
        "lr_schedule": _choice("none", "cosine", "step"),
        "patience": Dimension("int", 3, 10, minimum=0, maximum=1000),
    }


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of one job's search, after overrides."""

    dimensions: dict[str, Dimension]
    network: Literal["mlp", "cnn", "fixed", "transfer", "none"]  # fixed, transfer: init_from
    families: tuple[Family, ...] = ()  # the families searched; () the network alone

    @property
    def searched(self) -> tuple[Family, ...]:
        """The families trials choose from (the network family when none was named)."""
        if self.families:
            return self.families
        return (Family.CNN,) if self.network == "cnn" else (Family.MLP,)

    def family_of(self, params: dict[str, Any]) -> Family:
        """The family a trial's parameters describe."""
        if FAMILY_KEY in params:
            return Family(params[FAMILY_KEY])
        return self.searched[0]

    def dimensions_of(self, family: Family) -> dict[str, Dimension]:
        """The dimensions a trial of ``family`` samples."""
        if family in TABLE_FAMILIES:
            prefix = f"{family.value}_"
            return {n: d for n, d in self.dimensions.items() if n.startswith(prefix)}
        return {
            n: d
            for n, d in self.dimensions.items()
            if not any(n.startswith(f"{table.value}_") for table in TABLE_FAMILIES)
        }

    def grid(self, levels: int = 3) -> dict[str, list[Any]]:
        """A discretised grid (per-layer dimensions tied into one value for all layers)."""
        return {name: _levels(dimension, levels) for name, dimension in self.dimensions.items()}

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())


def _levels(dimension: Dimension, levels: int) -> list[Any]:
    if dimension.kind == "categorical":
        return list(dimension.choices)
    low, high = dimension.low, dimension.high
    if low == high:
        return [int(low) if dimension.kind == "int" else low]
    if dimension.kind == "int" and high - low + 1 <= levels + 1:
        return list(range(int(low), int(high) + 1))
    if dimension.log and low > 0:
        points = [low * (high / low) ** (i / (levels - 1)) for i in range(levels)]
    else:
        points = [low + (high - low) * i / (levels - 1) for i in range(levels)]
    if dimension.kind == "int":
        return sorted({round(point) for point in points})
    return points


def default_space(
    input_shape: list[int] | None,
    max_epochs: int,
    searched_architecture: bool = True,
    transfer_layers: int | None = None,
    families: tuple[Family, ...] = (),
    table: bool = False,
) -> SearchSpace:
    """The default space for a dataset: a CNN when rows are images, else an MLP (reading a
    table's features through searched embeddings when ``table``); the training only for a
    network fine-tuned from a registered one, and the transfer choices too when it learns
    a new head (``transfer_layers``: its body's weight layers). With ``families``: each
    named family's dimensions, side by side."""
    training = training_space(max_epochs)
    mlp = {**MLP_SPACE, **(TABLE_MLP_SPACE if table else {})}
    if families:
        dimensions: dict[str, Dimension] = {}
        network: Literal["mlp", "cnn", "none"] = "none"
        for family in families:
            if family == Family.MLP:
                dimensions.update({**mlp, **training})
                network = "mlp"
            elif family == Family.CNN:
                dimensions.update({**CNN_SPACE, **training})
                network = "cnn"
            else:
                dimensions.update(FAMILY_SPACES[family])
        return SearchSpace(dimensions, network, tuple(families))
    if transfer_layers is not None:
        return SearchSpace({**transfer_space(transfer_layers), **training}, "transfer")
    if not searched_architecture:
        return SearchSpace(training, "fixed")
    if input_shape and len(input_shape) == 3:
        return SearchSpace({**CNN_SPACE, **training}, "cnn")
    return SearchSpace({**mlp, **training}, "mlp")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integral(value: Any) -> bool:
    """An int, or a float with an integer value (no float conversion: JSON ints are
    unbounded)."""
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


RANGE_KEYS = frozenset({"low", "high", "log"})


def _override(path: str, dimension: Dimension, value: Any) -> Dimension:
    """``dimension`` as ``search.space`` sets it: a value, choices or a range."""
    if not isinstance(value, dict):
        fixed = _checked(path, dimension, value)
        if dimension.kind == "categorical":
            return replace(dimension, choices=(fixed,))
        return replace(dimension, low=fixed, high=fixed, log=False)
    unknown = sorted(str(key) for key in set(value) - RANGE_KEYS - {"choices"})
    if unknown:
        raise InvalidInput(f"{path}: unknown key(s) {unknown}; use low/high/log or choices")
    if "choices" not in value:
        return _range(path, dimension, value)
    mixed = sorted(RANGE_KEYS & set(value))
    if mixed:
        raise InvalidInput(f"{path}: choices or a range, not both; drop {mixed} or choices")
    choices = value["choices"]
    if not isinstance(choices, list) or not choices:
        raise InvalidInput(f"{path}.choices: must be a non-empty list")
    checked = [
        _checked(f"{path}.choices[{index}]", dimension, choice)
        for index, choice in enumerate(choices)
    ]
    return replace(dimension, kind="categorical", choices=tuple(dict.fromkeys(checked)))


def _range(path: str, dimension: Dimension, value: dict[str, Any]) -> Dimension:
    """A numeric dimension's range; an integer one for a categorical of integers (such as
    ``batch_size``), whose own choices give the bounds ``value`` leaves out."""
    if dimension.kind == "categorical":
        if not dimension.open_choices:
            raise InvalidInput(
                f"{path}: a categorical dimension takes a value or choices, "
                f"not a range; choices are {list(dimension.choices)}"
            )
        dimension = replace(
            dimension,
            kind="int",
            low=min(dimension.choices),
            high=max(dimension.choices),
            choices=(),
            open_choices=False,
        )
    low = _checked(f"{path}.low", dimension, value.get("low", dimension.low))
    high = _checked(f"{path}.high", dimension, value.get("high", dimension.high))
    # Without "log" a range keeps its default's scale, unless it reaches 0 or below,
    # where only a linear one goes (weight_decay from 0).
    log = value.get("log", dimension.log and low > 0)
    if not isinstance(log, bool):
        raise InvalidInput(f"{path}.log: must be true or false, got {log!r}")
    if low > high:
        raise InvalidInput(f"{path}: empty range, low {low} is above high {high}")
    if log and low <= 0:
        raise InvalidInput(f"{path}: a log range needs low > 0, got {low}")
    return replace(dimension, low=low, high=high, log=log)


def _checked(path: str, dimension: Dimension, value: Any) -> Any:
    """``value`` if ``dimension`` allows it (an integer's as an int), else InvalidInput."""
    _check_value(path, dimension, value)
    if dimension.kind == "int" or (dimension.kind == "categorical" and dimension.open_choices):
        return int(value)
    return value


def _check_value(path: str, dimension: Dimension, value: Any) -> None:
    if dimension.kind == "categorical" and not dimension.open_choices:
        allowed = dimension.choices
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise InvalidInput(f"{path}: {value!r} is not one of {list(allowed)}")
        return
    if dimension.kind == "categorical" and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidInput(f"{path}: expected an integer, got {value!r}")
    if not _is_number(value) or (dimension.kind == "int" and not _is_integral(value)):
        expected = "an integer" if dimension.kind == "int" else "a number"
        raise InvalidInput(f"{path}: expected {expected}, got {value!r}")
    if not dimension.minimum <= value <= dimension.maximum:
        raise InvalidInput(
            f"{path}: {value!r} is outside {dimension.minimum:g} to {dimension.maximum:g}"
        )


def apply_overrides(space: SearchSpace, overrides: dict[str, Any]) -> SearchSpace:
    """The space with ``search.space`` applied; 422 naming the path of anything wrong."""
    dimensions = dict(space.dimensions)
    for name, value in overrides.items():
        path = f"search.space.{name}"
        if name not in dimensions:
            kind = {
                "mlp": "an MLP search",
                "cnn": "a CNN search",
                "fixed": "a search with init_from (its architecture is fixed)",
                "transfer": "a transfer with init_from (its architecture is fixed)",
                "none": "the families searched",
            }[space.network]
            if space.families:
                kind = f"the families {[f.value for f in space.families]}"
            raise InvalidInput(f"{path}: unknown dimension for {kind}; known: {sorted(dimensions)}")
        dimensions[name] = _override(path, dimensions[name], value)
    return SearchSpace(dimensions, space.network, space.families)


def _suggest(trial: optuna.Trial, name: str, dimension: Dimension) -> Any:
    if dimension.kind == "categorical":
        return trial.suggest_categorical(name, list(dimension.choices))
    if dimension.kind == "int":
        return trial.suggest_int(name, int(dimension.low), int(dimension.high), log=dimension.log)
    return trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)


def suggest(
    trial: optuna.Trial, space: SearchSpace, *, tied_layers: bool = False
) -> dict[str, Any]:
    """Sample one configuration; returns the flat parameter dict stored on the trial.
    ``tied_layers`` (grid search) uses one value for every layer's width or channels."""
    family = space.searched[0]
    if len(space.searched) > 1:
        family = Family(trial.suggest_categorical(FAMILY_KEY, [f.value for f in space.searched]))
    dimensions = space.dimensions_of(family)
    for name, dimension in dimensions.items():
        if dimension.per_layer and not tied_layers:
            continue
        _suggest(trial, name, dimension)
    if not tied_layers:
        for per_layer, count in LAYER_COUNT.items():
            if per_layer in dimensions:
                for layer in range(int(trial.params[count])):
                    _suggest(trial, f"{per_layer}_{layer}", space.dimensions[per_layer])
    return dict(trial.params)


def fits(space: SearchSpace, params: dict[str, Any]) -> bool:
    """Whether a parameter dict (e.g. from an earlier job) lies inside ``space``."""
    family = params.get(FAMILY_KEY, space.searched[0])
    if family not in space.searched or (FAMILY_KEY in params) != (len(space.searched) > 1):
        return False
    dimensions = space.dimensions_of(Family(family))
    for name, value in params.items():
        if name == FAMILY_KEY:
            continue
        base = name.rsplit("_", 1)[0] if name.rsplit("_", 1)[-1].isdigit() else name
        dimension = dimensions.get(name) or dimensions.get(base)
        if dimension is None:
            return False
        if dimension.kind == "categorical":
            if value not in dimension.choices:
                return False
        elif not dimension.low <= value <= dimension.high:
            return False
    return all(name in params or dimension.per_layer for name, dimension in dimensions.items())

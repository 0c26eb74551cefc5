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
the network's and its training's, unprefixed as before). Each family declares its own
dimensions beside its typed parameters (``app.training.families``); this module combines
them, applies overrides and samples."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import optuna

from app.contracts.params import ParamValue
from app.core.errors import InvalidInput
from app.training.families.base import (
    DataShape,
    Dimension,
    FamilyParams,
    SpaceContext,
    float_range,
    int_range,
)
from app.training.families.cnn import CnnParams
from app.training.families.mlp import TABLE_MLP_SPACE as TABLE_MLP_SPACE
from app.training.families.mlp import MlpParams
from app.training.families.networks import LAYER_COUNT, training_space
from app.training.families.registry import (
    FAMILIES,
    NETWORK_FAMILIES,
    Family,
    default_network,
    family_named,
    network_family,
)

# The network families' own dimensions (declared with their parameters in
# ``app.training.families``), as earlier code and tests name them.
MLP_SPACE: dict[str, Dimension] = MlpParams.dimensions()
CNN_SPACE: dict[str, Dimension] = CnnParams.dimensions()
FAMILY_KEY = "family"  # the parameter that picks a trial's family
# What a search that searches no family's architecture tunes, as errors name it.
FIXED_SEARCHES = {
    "fixed": "a search with init_from (its architecture is fixed)",
    "transfer": "a transfer with init_from (its architecture is fixed)",
    "none": "the families searched",
}


class TransferParams(FamilyParams):
    """How a transfer trains a registered network's body under a new head (its space:
    ``transfer_space``, bounded by the body's layers)."""

    frozen_layers: int
    body_lr_factor: float
    head_warmup_epochs: int


def transfer_space(body_layers: int) -> dict[str, Dimension]:
    """What a transfer from a registered network tunes, besides training: how many of its
    body's layers stay frozen (all of them: only the new head learns), how much slower the
    rest of the body learns than the head, and epochs of the head alone first."""
    return {
        "frozen_layers": int_range(0, body_layers, minimum=0, maximum=body_layers),
        "body_lr_factor": float_range(0.01, 1.0, log=True, minimum=1e-6, maximum=1.0),
        "head_warmup_epochs": int_range(0, 5, minimum=0, maximum=100),
    }


def data_shape(input_shape: list[int] | None) -> DataShape:
    """``images`` for rows shaped [channels, height, width] (what a CNN reads), else
    ``rows``."""
    return "images" if input_shape and len(input_shape) == 3 else "rows"


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of one job's search, after overrides. ``network``: the network
    family searched ("mlp", "cnn"), "fixed" or "transfer" (``init_from``), or "none"."""

    dimensions: dict[str, Dimension]
    network: str
    families: tuple[Family, ...] = ()  # the families searched; () the network alone

    @property
    def searched(self) -> tuple[Family, ...]:
        """The families trials choose from (the network family when none was named; a
        network ``init_from`` fine-tunes counts as the rows' default one)."""
        if self.families:
            return self.families
        if self.network in NETWORK_FAMILIES:
            return (Family(self.network),)
        return (Family(default_network("rows").name),)

    def family_of(self, params: dict[str, ParamValue]) -> Family:
        """The family a trial's parameters describe."""
        if FAMILY_KEY in params:
            return Family(params[FAMILY_KEY])
        return self.searched[0]

    def dimensions_of(self, family: Family) -> dict[str, Dimension]:
        """The dimensions a trial of ``family`` samples: those its prefix names, or for a
        network (unprefixed) those no prefixed family claims."""
        prefix = family_named(family).prefix
        if prefix:
            return {n: d for n, d in self.dimensions.items() if n.startswith(prefix)}
        claimed = tuple(other.prefix for other in FAMILIES.values() if other.prefix)
        return {n: d for n, d in self.dimensions.items() if not n.startswith(claimed)}

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
    category_codes: bool = False,
) -> SearchSpace:
    """The default space for a dataset: the network searched by default on its rows (a CNN
    when rows are images, else an MLP, reading a table's features through searched
    embeddings when ``table``; a tree family searching its category splits when
    ``category_codes``); the training only for a network fine-tuned from a
    registered one, and the transfer choices too when it learns a new head
    (``transfer_layers``: its body's weight layers). With ``families``: each named
    family's dimensions, side by side."""
    context = SpaceContext(max_epochs=max_epochs, table=table, category_codes=category_codes)
    if families:
        dimensions: dict[str, Dimension] = {}
        network = "none"
        for name in families:
            family = family_named(name)
            dimensions.update(family.space(context))
            if family.trains_network:
                network = family.name
        return SearchSpace(dimensions, network, tuple(families))
    training = training_space(max_epochs)
    if transfer_layers is not None:
        return SearchSpace({**transfer_space(transfer_layers), **training}, "transfer")
    if not searched_architecture:
        return SearchSpace(training, "fixed")
    network_searched = default_network(data_shape(input_shape))
    return SearchSpace(network_searched.space(context), network_searched.name)


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
            if space.families:
                kind = f"the families {[str(f) for f in space.families]}"
            elif space.network in NETWORK_FAMILIES:
                kind = network_family(space.network).searched_as
            else:
                kind = FIXED_SEARCHES[space.network]
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
) -> dict[str, ParamValue]:
    """Sample one configuration; returns the flat parameter dict stored on the trial.
    ``tied_layers`` (grid search) uses one value for every layer's width or channels."""
    family = space.searched[0]
    if len(space.searched) > 1:
        family = Family(trial.suggest_categorical(FAMILY_KEY, [str(f) for f in space.searched]))
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


def fits(space: SearchSpace, params: dict[str, ParamValue]) -> bool:
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
        elif isinstance(value, str) or not dimension.low <= value <= dimension.high:
            return False
    return all(name in params or dimension.per_layer for name, dimension in dimensions.items())

"""What a model family is: one class that says when it applies, its typed parameters (their
defaults written once, their search space declared beside them), the configurations a
search tries first, and how it fits, exports to ONNX and describes a fitted model.

Torch-free and light to import: the gateway reads the declarations (the request's family
names, the default list, the search space, the docs' descriptions). A family reaches its
heavy libraries only inside its methods (LightGBM, scikit-learn), and torch only through
a ``module:function`` path loaded on first use (``load``), so that nothing here, nor in
any family file, imports them at start-up."""

from __future__ import annotations

import abc
import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

import onnx
from pydantic import BaseModel, ConfigDict

from app.contracts.enums import Task
from app.training.table_models import FitOptions, ModelDescription, TableData, TableModel

Kind = Literal["int", "float", "categorical"]
# Where a family may run: "rows" (a table's encoded features, or any flat rows) and
# "images" (rows shaped [channels, height, width]).
DataShape = Literal["rows", "images"]
ALL_SHAPES: frozenset[DataShape] = frozenset({"rows", "images"})
ALL_TASKS: frozenset[Task] = frozenset(Task)


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


def int_range(
    low: int,
    high: int,
    log: bool = False,
    per_layer: bool = False,
    minimum: float = 1,
    maximum: float = 4096,
) -> Dimension:
    return Dimension("int", low, high, log, per_layer=per_layer, minimum=minimum, maximum=maximum)


def float_range(
    low: float, high: float, log: bool = False, minimum: float = 0.0, maximum: float = math.inf
) -> Dimension:
    return Dimension("float", low, high, log, minimum=minimum, maximum=maximum)


def choice(*choices: Any) -> Dimension:
    return Dimension("categorical", choices=choices)


def integer_choice(*choices: int, minimum: float, maximum: float) -> Dimension:
    """Choices of integers that an override may replace by other integers, or a range."""
    return Dimension(
        "categorical", choices=choices, open_choices=True, minimum=minimum, maximum=maximum
    )


class FamilyParams(BaseModel):
    """A family's parameters, typed. A field annotated with a ``Dimension``
    (``Annotated[int, int_range(4, 256)]``) is searched, in the order the fields are
    declared; its default is what a fit without that parameter uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def dimensions(cls) -> dict[str, Dimension]:
        """The searched fields, by field name, in declaration order."""
        return {
            name: marker
            for name, field in cls.model_fields.items()
            for marker in field.metadata
            if isinstance(marker, Dimension)
        }

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Self:
        """The model from a trial's values by field name (others are not this model's)."""
        return cls.model_validate({k: v for k, v in values.items() if k in cls.model_fields})


P = TypeVar("P", bound=FamilyParams)
M = TypeVar("M")


@dataclass(frozen=True)
class SpaceContext:
    """What a family's space depends on: the most epochs a network may train, whether
    the rows are an encoded table (an MLP then searches how it reads the features), and
    whether its features hold category codes (a tree family then searches how it splits
    on categories)."""

    max_epochs: int
    table: bool = False
    category_codes: bool = False


def load(path: str) -> Callable[..., Any]:
    """The function a ``module:function`` path names, imported on first use (so the
    declaration that names it never imports its module: torch stays on the workers)."""
    module, _, function = path.partition(":")
    found: Callable[..., Any] = getattr(importlib.import_module(module), function)
    return found


class ModelFamily(abc.ABC, Generic[P, M]):
    """A family of models a search can train (``M``: a fitted model). Declared once, in one
    file of ``app.training.families`` that sets ``FAMILY`` to an instance: the registry
    finds it there, and the family name type, the default family list, the request's field
    description and the contract suite in ``tests/training`` follow."""

    name: ClassVar[str]
    summary: ClassVar[str]  # a few words for the docs ("LightGBM trees"); "" says nothing
    params_model: type[P]
    tasks: ClassVar[frozenset[Task]] = ALL_TASKS  # the tasks it learns
    runs_on: ClassVar[frozenset[DataShape]] = ALL_SHAPES  # data it may be searched on
    default_on: ClassVar[frozenset[DataShape]] = frozenset({"rows"})  # searched by default
    listed: ClassVar[int]  # its place in lists: names, default families, docs
    cost: ClassVar[int] = 100  # starting points are tried cheapest first
    # Tried before the sampler's where the learned portfolio (app/search/portfolio.json)
    # has no evidence for the family; the portfolio's points come first otherwise.
    starting_points: ClassVar[tuple[FamilyParams, ...]] = ()
    trains_network: ClassVar[bool] = False  # a torch network trained epoch by epoch
    graph_weights: ClassVar[bool] = True  # False: its graph keeps weights in node attributes
    boosts: ClassVar[bool] = False  # its trials' ``refit_epochs`` are boosting rounds kept
    # Export seconds per learnt number beyond a fixed cost: a converter that walks every
    # tree node in Python (what a search's finish plans for); 0 where it does not.
    export_s_per_param: ClassVar[float] = 0.0

    @property
    def prefix(self) -> str:
        """What starts its stored parameter names (``gbdt_num_leaves``); "" for a network,
        whose names are unprefixed."""
        return f"{self.name}_"

    def applies(self, task: Task | str, shape: DataShape) -> bool:
        """Whether it may be searched for this task on data of this shape."""
        return task in self.tasks and shape in self.runs_on

    def space(self, context: SpaceContext) -> dict[str, Dimension]:
        """Its dimensions by stored name (``Dimension`` values), in sampling order."""
        return {self.prefix + name: d for name, d in self.params_model.dimensions().items()}

    def params(self, stored: Mapping[str, Any]) -> P:
        """The typed parameters of a trial's stored values (flat, as Optuna and the
        registry keep them); what is missing takes its default."""
        own = {
            name.removeprefix(self.prefix): value
            for name, value in stored.items()
            if name.startswith(self.prefix)
        }
        return self.params_model.from_values(own)

    def stored(self, params: FamilyParams) -> dict[str, Any]:
        """The searched parameters as a trial stores them (flat, prefixed names)."""
        values = params.model_dump()
        return {self.prefix + name: values[name] for name in self.params_model.dimensions()}

    @abc.abstractmethod
    def fit(self, params: P, data: TableData, n_outputs: int, options: FitOptions) -> M:
        """A model fitted on ``data`` (``n_outputs``: classes, or 1 for values)."""

    @abc.abstractmethod
    def export(self, model: M) -> onnx.ModelProto:
        """The fitted model as one ONNX graph: ``input`` [batch, features] to ``output``."""

    @abc.abstractmethod
    def describe(self, model: M) -> ModelDescription:
        """What a fitted model is (its family, kind, learnt numbers, trees)."""


class TableFamily(ModelFamily[P, TableModel]):
    """A family fitted in one go on a table's encoded features (no epochs, no torch): its
    fitted model is a ``TableModel``, which exports and describes itself."""

    def export(self, model: TableModel) -> onnx.ModelProto:
        return model.to_onnx()

    def describe(self, model: TableModel) -> ModelDescription:
        return model.describe()

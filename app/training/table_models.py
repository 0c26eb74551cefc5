"""Models of a table's encoded features that are not torch networks (the table families of
``app.training.families``: trees, linear models, forests). Each predicts what a ``Network``
predicts (probabilities, or values in target units), exports one ONNX graph with the
network's interface (input ``input`` [batch, features], output ``output`` [batch, classes
or 1]), so it serves, averages and takes a table's preprocessing like a network.

Torch-free: the family declarations the gateway reads subclass ``TableModel`` in the same
file; the parity checks and averages adapt it to torch where they need to
(``app.training.export.predicted``). The contract suite in ``tests/training`` runs every
registered family."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict

from app.training.onnx_io import INPUT_NAME, OUTPUT_NAME, compact_onnx


class Infeasible(Exception):
    """The candidate breaks a constraint; the message says which and by how much (a search
    records the trial as infeasible and goes on)."""


@dataclass(frozen=True)
class TableData:
    """Encoded rows to fit on, and (for early stopping) rows to watch."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None


@dataclass(frozen=True)
class FitOptions:
    """How one fit runs: its seed, threads, and ``rounds`` fixed for a refit (None: the
    family's own stopping on the watched rows)."""

    seed: int = 0
    threads: int = 1
    rounds: int | None = None
    check: Callable[[], None] = lambda: None  # raises to stop a long fit
    input_shape: tuple[int, ...] | None = None  # rows' shape, for a family that reads images
    # Features holding category codes (``TableEncoding.category_codes``): a tree family
    # splits on them as categories; a family that weighs features ignores them.
    category_codes: tuple[int, ...] = ()


class ModelDescription(BaseModel):
    """What a fitted model is, as a family describes it: its family, the kind of model,
    its learnt numbers, and (trees) their count, leaves and boosting rounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: str
    model: str  # "LightGBM booster", "random forest", "logistic regression", "MLPConfig"
    learnt: int  # thresholds and leaf values, coefficients, or a network's parameters
    trees: int | None = None
    leaves: int | None = None
    rounds: int | None = None


class TableModel(abc.ABC):
    """A fitted model of one table's encoded features."""

    family: ClassVar[str]  # the name of the family that fits it
    state_suffix: ClassVar[str]  # the file extension of ``state_bytes``

    def __init__(self, n_inputs: int, n_outputs: int, classification: bool) -> None:
        self.n_inputs, self.n_outputs, self.classification = n_inputs, n_outputs, classification

    @abc.abstractmethod
    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities [rows, classes] (classification) or values [rows, 1]."""

    @abc.abstractmethod
    def graph(self) -> onnx.ModelProto:
        """The model as ONNX, before ``to_onnx`` names its input and output."""

    @property
    @abc.abstractmethod
    def n_params(self) -> int:
        """Learnt numbers: tree nodes' thresholds and leaf values, or coefficients."""

    @property
    @abc.abstractmethod
    def fitted_rounds(self) -> int:
        """What a refit on more rows repeats: boosting rounds (1 for a closed-form fit)."""

    @abc.abstractmethod
    def state_bytes(self) -> bytes:
        """The fitted model in its own format (kept as the trial's checkpoint)."""

    @abc.abstractmethod
    def describe(self) -> ModelDescription:
        """What the fitted model is (trees, leaves, rounds)."""

    def to_onnx(self) -> onnx.ModelProto:
        """One graph, input ``input`` and output ``output`` only, no debugging records."""
        model = self.graph()
        graph = model.graph
        if [value.name for value in graph.input] != [INPUT_NAME]:
            raise ValueError(f"{self.family} graph must take one input named {INPUT_NAME!r}")
        if graph.output[0].name != OUTPUT_NAME:
            raise ValueError(f"{self.family} graph's first output must be {OUTPUT_NAME!r}")
        del graph.output[1:]
        compact_onnx(model)
        onnx.checker.check_model(model)
        return model


def fit_table_model(
    family: str,
    params: Mapping[str, Any],
    data: TableData,
    n_outputs: int,
    options: FitOptions,
) -> TableModel:
    """Fit the table family named ``family`` with a trial's stored ``params`` (those named
    ``<family>_...``; missing ones take the family's defaults)."""
    from app.training.families.registry import table_family

    fitter = table_family(family)
    return fitter.fit(fitter.params(params), data, n_outputs, options)


def class_probabilities(positive: np.ndarray) -> np.ndarray:
    """[rows, 2] from the positive class's probability (a binary model's one column)."""
    positive = positive.reshape(-1).astype(np.float64)
    return np.stack([1.0 - positive, positive], axis=1)

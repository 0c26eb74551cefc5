"""Models of a table's encoded features that are not torch networks: gradient-boosted trees
(``app.training.trees``) and linear models (``app.training.linear``). Each predicts what a
``Network`` predicts (probabilities, or values in target units), exports one ONNX graph with
the network's interface (input ``input`` [batch, features], output ``output`` [batch,
classes or 1]), so it serves, averages and takes a table's preprocessing like a network.

``FAMILIES`` maps a family name to its class; ``fit_table_model`` is the one entry point the
search uses, the contract suite in ``tests/training`` runs every family."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnx
import torch

from app.core.errors import InvalidInput
from app.training.export import INPUT_NAME, OUTPUT_NAME, compact_onnx


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


class TableModel(abc.ABC):
    """A fitted model of one table's encoded features."""

    family: ClassVar[str]
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
    def describe(self) -> dict[str, Any]:
        """What the registry shows about the fitted model (trees, leaves, rounds)."""

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

    # The parity checks and the ensemble code take what a network offers.
    def eval(self) -> TableModel:
        return self

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.predict_rows(x.numpy()).astype(np.float32))


FAMILIES: dict[str, type[TableModel]] = {}
FitFunction = Callable[[dict[str, Any], TableData, int, FitOptions], TableModel]
FITTERS: dict[str, FitFunction] = {}


def register_family(name: str, fit: FitFunction) -> Callable[[type[TableModel]], type[TableModel]]:
    """Class decorator: a family, and the function that fits it from a trial's parameters."""

    def add(cls: type[TableModel]) -> type[TableModel]:
        cls.family = name
        FAMILIES[name] = cls
        FITTERS[name] = fit
        return cls

    return add


def fit_table_model(
    family: str,
    params: dict[str, Any],
    data: TableData,
    n_outputs: int,
    options: FitOptions,
) -> TableModel:
    """Fit ``family`` with a trial's ``params`` (those named ``<family>_...``)."""
    import app.training.linear
    import app.training.trees  # noqa: F401

    try:
        fit = FITTERS[family]
    except KeyError:
        raise InvalidInput(f"unknown model family {family!r}; known: {sorted(FITTERS)}") from None
    prefix = f"{family}_"
    own = {
        name.removeprefix(prefix): value
        for name, value in params.items()
        if name.startswith(prefix)
    }
    return fit(own, data, n_outputs, options)


def class_probabilities(positive: np.ndarray) -> np.ndarray:
    """[rows, 2] from the positive class's probability (a binary model's one column)."""
    positive = positive.reshape(-1).astype(np.float64)
    return np.stack([1.0 - positive, positive], axis=1)

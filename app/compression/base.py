"""The compression interface: a ``Compressor`` turns one ``Candidate`` into a smaller one.
Implementations live in their own modules; ``get_compressor`` maps a method step to one."""

from __future__ import annotations

import abc
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from app.compression.steps import MethodStep
from app.contracts.encoding import TableEncoding
from app.contracts.enums import Task
from app.core.errors import BrokenInvariant, KilnError
from app.preprocessing.encode import Raw, feeds
from app.preprocessing.graph import attach
from app.training.export import export_onnx
from app.training.models import Network, count_parameters
from app.training.train import TrainData


class CompressionError(KilnError):
    """A method cannot run on this candidate; the message says why (shown as the job error)."""


@dataclass(frozen=True)
class CompressionData:
    """The parent's data splits (the test split is never trained or calibrated on)."""

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    seed: int = 0
    threads: int = 1
    max_accuracy_drop: float = 0.01
    encoding: TableEncoding | None = None  # the preprocessing in front of the network
    raw_test: Raw | None = None  # the test rows' raw columns (with an encoding)

    def used_columns(self, candidate: Candidate) -> set[str]:
        """The source columns a candidate's network reads (all, without a selection)."""
        if self.encoding is None:
            raise BrokenInvariant("self.encoding is None")
        picked = None if candidate.columns is None else [int(c) for c in candidate.columns]
        return self.encoding.sources_of(picked)

    def served(self, candidate: Candidate) -> bytes:
        """The file that would serve: the candidate's network graph, behind the
        preprocessing when the table has one."""
        if self.encoding is None:
            return candidate.onnx
        return attach(
            candidate.onnx,
            self.encoding,
            used=self.used_columns(candidate),
            input_name=candidate.input_name,
        )

    def test_feeds(self, candidate: Candidate) -> dict[str, np.ndarray]:
        """The test rows as the served file takes them (raw columns, or the features)."""
        if self.encoding is None:
            return {candidate.input_name: self.x_test}
        if self.raw_test is None:
            raise BrokenInvariant("self.raw_test is None")
        return feeds(self.encoding, self.raw_test, self.used_columns(candidate))

    def groups(self) -> list[np.ndarray] | None:
        """Feature positions per source column (None: every feature is its own column)."""
        if self.encoding is None:
            return None
        return [np.arange(start, end) for start, end in self.encoding.spans()]

    @property
    def classification(self) -> bool:
        return self.task == Task.CLASSIFICATION

    @property
    def n_outputs(self) -> int:
        return int(self.y_train.max()) + 1 if self.classification else 1

    def train_data(self, columns: np.ndarray | None = None) -> TrainData:
        """Training and validation rows, restricted to ``columns`` when given."""
        pick = (lambda rows: rows) if columns is None else (lambda rows: rows[:, columns])
        return TrainData(
            x_train=np.ascontiguousarray(pick(self.x_train)),
            y_train=self.y_train,
            x_val=np.ascontiguousarray(pick(self.x_val)),
            y_val=self.y_val,
        )


@dataclass
class Candidate:
    """A model on its way through a chain: the network's ONNX bytes (features in, without
    the table's preprocessing: ``CompressionData.served`` adds it) and, while one exists,
    the torch network they were exported from (``columns``: the feature columns that
    network reads, chosen by select_features; the ONNX graph takes every column)."""

    onnx: bytes
    input_name: str
    output_name: str
    n_features: int
    params: int | None
    network: Network | None = None
    columns: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)

    def derived(
        self, network: Network, *, columns: np.ndarray | None, report: dict[str, Any]
    ) -> Candidate:
        """A new torch network made from this candidate, exported with the same signature."""
        return Candidate.from_network(
            network,
            n_features=self.n_features,
            columns=columns,
            report=report,
            names=(self.input_name, self.output_name),
        )

    @classmethod
    def from_network(
        cls,
        network: Network,
        *,
        n_features: int,
        columns: np.ndarray | None = None,
        report: dict[str, Any] | None = None,
        names: tuple[str, str] = ("input", "output"),
    ) -> Candidate:
        """Export ``network`` (behind a column selection, if any) and wrap it."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.onnx"
            export_onnx(
                network,
                path,
                columns=columns,
                n_features=n_features,
                input_name=names[0],
                output_name=names[1],
            )
            onnx = path.read_bytes()
        return cls(
            onnx=onnx,
            input_name=names[0],
            output_name=names[1],
            n_features=n_features,
            params=count_parameters(network),
            network=network,
            columns=columns,
            report=report or {},
        )

    def graph_only(self, onnx: bytes, report: dict[str, Any]) -> Candidate:
        """The same model rewritten as a graph (quantized): no torch form any more."""
        return dataclasses.replace(self, onnx=onnx, network=None, report=report)


class Compressor(abc.ABC):
    """One compression method with its settings. ``apply`` must not change its input
    candidate (chains branch from shared prefixes), must keep the ONNX signature (same input
    name, feature count and output shape) and raises CompressionError when the candidate
    cannot be compressed this way. Implementations are not shared between threads."""

    needs_network: ClassVar[bool] = False

    def __init__(self, step: Any) -> None:
        self.step = step

    @abc.abstractmethod
    def apply(
        self, candidate: Candidate, data: CompressionData, check: Callable[[], None]
    ) -> Candidate:
        """The compressed candidate; ``check()`` is called between long stages (it raises
        to stop a job that was cancelled)."""

    def network_of(self, candidate: Candidate) -> Network:
        """The candidate's torch network, or a CompressionError that says why there is none."""
        if candidate.network is None:
            raise CompressionError(
                f"{self.step.method} needs torch weights; this model only "
                "exists as an ONNX graph (uploaded or quantized): put "
                "distill before it"
            )
        return candidate.network


COMPRESSORS: dict[str, type[Compressor]] = {}


def register(name: str) -> Callable[[type[Compressor]], type[Compressor]]:
    """Class decorator: make a compressor available under a method name."""

    def add(cls: type[Compressor]) -> type[Compressor]:
        COMPRESSORS[name] = cls
        return cls

    return add


def get_compressor(step: MethodStep) -> Compressor:
    """The compressor for one step of a chain, configured with the step's settings."""
    import app.compression.methods  # noqa: F401  (registers every method)

    try:
        return COMPRESSORS[step.method](step)
    except KeyError:
        raise CompressionError(f"unknown compression method {step.method!r}") from None

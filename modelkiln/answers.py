"""The registry's and the datasets' answers, typed: a dataset and its profile, a model, a
version with its signature and lineage, a search's trials, and a predict's answer (see
``modelkiln.wire`` for how tolerantly they are read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelkiln.wire import JSON_KEY, Answer, Scalar


@dataclass(frozen=True)
class ValueCount(Answer):
    value: Scalar
    rows: int


@dataclass(frozen=True)
class ColumnProfile(Answer):
    """One column as the model sees it: its type (and why an ignored one is left out),
    gaps, distinct values, and its spread, frequent values or dates."""

    name: str
    type: str
    reason: str | None = None
    missing: int = 0
    distinct: int | None = None
    min: float | None = None
    mean: float | None = None
    max: float | None = None
    top: list[ValueCount] = field(default_factory=list)
    earliest: str | None = None
    latest: str | None = None


@dataclass(frozen=True)
class ClassCount(Answer):
    label: Scalar
    rows: int


@dataclass(frozen=True)
class TargetProfile(Answer):
    """The column to predict: rows per class, or a continuous value's spread."""

    classes: list[ClassCount] = field(default_factory=list)
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class DroppedRows(Answer):
    reason: str
    rows: int
    first_line: int


@dataclass(frozen=True)
class DatasetProfile(Answer):
    columns: list[ColumnProfile] = field(default_factory=list)
    target: TargetProfile = field(default_factory=TargetProfile)
    dropped: list[DroppedRows] = field(default_factory=list)


@dataclass(frozen=True)
class Dataset(Answer):
    id: int
    name: str
    target: str = ""
    task: str = ""
    rows: int = 0
    feature_names: list[str] = field(default_factory=list)
    class_labels: list[Scalar] | None = None
    profile: DatasetProfile | None = None  # None: uploaded before profiles existed


@dataclass(frozen=True)
class Model(Answer):
    name: str
    task: str = ""
    latest_version: int = 0
    aliases: dict[str, int] = field(default_factory=dict)
    # What the server says serves a predict naming no version (None: none live, or a
    # server from before it said so); ``serving_version`` falls back to the newest.
    served_version: int | None = field(default=None, metadata={JSON_KEY: "serving_version"})

    @property
    def serving_version(self) -> int:
        """What a predict naming no version uses (the server decides; see its docs)."""
        return self.latest_version if self.served_version is None else self.served_version


@dataclass(frozen=True)
class TensorSpec(Answer):
    """One input of a version's signature: a column (``kind`` says its type) or a tensor
    of numbers (``shape``, -1 for the batch)."""

    name: str
    kind: str | None = None
    shape: list[int] = field(default_factory=list)
    required: bool = True
    words_as_gaps: bool = False


@dataclass(frozen=True)
class Signature(Answer):
    inputs: list[TensorSpec] = field(default_factory=list)


@dataclass(frozen=True)
class VersionRef(Answer):
    model: str
    version: int


@dataclass(frozen=True)
class Lineage(Answer):
    """Where a version came from: the job and dataset that made it, or the version it was
    compressed from and how."""

    job_id: int | None = None
    dataset_id: int | None = None
    parent: VersionRef | None = None
    method: str | None = None


@dataclass(frozen=True)
class Version(Answer):
    model: str
    version: int
    status: str = ""
    source: str = ""
    size_bytes: int = 0
    latency_p50_ms: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # numbers, and a confusion matrix
    lineage: Lineage = field(default_factory=Lineage)
    signature: Signature = field(default_factory=Signature)
    class_labels: list[Scalar] | None = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self.signature.inputs)


@dataclass(frozen=True)
class Trial(Answer):
    """One trial of a search: its parameters, objective values, state and timing."""

    number: int
    attempt: int = 1
    state: str = ""
    params: dict[str, Scalar | None] = field(default_factory=dict)
    value: float | None = None
    values: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # the numbers among them
    intermediate: list[float] = field(default_factory=list)
    retry_of: int | None = None
    error: str | None = None
    worker: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class Predictions(Answer):
    """A predict's answer: one prediction per row (a label, a number, or a row of numbers:
    what the model outputs), and a classifier's probabilities with the class of each
    column."""

    predictions: list[Any] = field(default_factory=list)
    probabilities: list[list[float | None]] | None = None  # None: a value JSON cannot hold
    classes: list[Scalar] | None = None
    model: str = ""
    version: int | None = None

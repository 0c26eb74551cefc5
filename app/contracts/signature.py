"""The typed contracts a model version carries from room to room: its signature (the tensors
it takes and gives) and its config (how it was made). Stored as JSON columns, read back as
these models (``app.core.db.PydanticJSON``), never as dicts read by string keys."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.contracts.encoding import NumericColumn, TableEncoding
from app.contracts.networks import CNNConfig, NetworkConfig

MAX_LISTED_CATEGORIES = 200  # categories a signature lists per column


class TensorSpec(BaseModel):
    """One input or output tensor, as the Open Inference Protocol describes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    datatype: str = Field(description="Open Inference Protocol datatype, e.g. FP32.")
    shape: list[int] = Field(description="-1 for the batch dimension.")
    kind: str | None = Field(
        default=None,
        description="For a model that takes one input per "
        "source column: numeric, categorical, datetime, or ignored (a "
        "column of the upload that is not a feature).",
    )
    categories: list[str] | None = Field(
        default=None,
        description="Categories seen in "
        "training (the most frequent, for many-valued "
        "columns); any other value is read as 'other'.",
    )
    allows_missing: bool = Field(
        default=False,
        description="Whether a gap is accepted (null, "
        "or an absent key, on /v1; NaN or an empty string on /v2).",
    )
    required: bool = Field(
        default=True,
        description="False for a column the model no "
        "longer reads (dropped by feature selection): it may be left out.",
    )
    words_as_gaps: bool = Field(
        default=False,
        description="A numeric column whose upload held a few words among its numbers: "
        "on /v1, text sent for it is read as a gap, as the upload read those words (a "
        "number written as text is that number); on /v2, send NaN.",
    )


class Signature(BaseModel):
    """What a version takes and gives; the first input and output are the ones served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @classmethod
    def of_tensors(
        cls,
        *,
        input_name: str,
        row_shape: tuple[int, ...] | list[int],
        output_name: str,
        width: int,
    ) -> Signature:
        """One float32 input of rows shaped ``row_shape``, one float32 output of ``width``."""
        return cls(
            inputs=[TensorSpec(name=input_name, datatype="FP32", shape=[-1, *row_shape])],
            outputs=[TensorSpec(name=output_name, datatype="FP32", shape=[-1, width])],
        )

    @classmethod
    def of_columns(
        cls, encoding: TableEncoding, *, used: set[str], output_name: str, width: int
    ) -> Signature:
        """One input per source column ([-1, 1]: FP32 numbers, BYTES for text and dates);
        only the ``used`` ones are graph inputs and required."""
        inputs = []
        for column in encoding.columns:
            categories = (
                column.categories[:MAX_LISTED_CATEGORIES] if column.kind == "categorical" else None
            )
            inputs.append(
                TensorSpec(
                    name=column.name,
                    datatype="FP32" if column.kind == "numeric" else "BYTES",
                    shape=[-1, 1],
                    kind=column.kind,
                    categories=categories,
                    allows_missing=True,
                    required=column.name in used,
                    words_as_gaps=isinstance(column, NumericColumn) and column.words_as_gaps,
                )
            )
        inputs += [
            TensorSpec(
                name=name,
                datatype="BYTES",
                shape=[-1, 1],
                kind="ignored",
                allows_missing=True,
                required=False,
            )
            for name in encoding.ignored
        ]
        return cls(
            inputs=inputs,
            outputs=[TensorSpec(name=output_name, datatype="FP32", shape=[-1, width])],
        )

    def difference(self, other: Signature) -> str | None:
        """Why a request this version accepts may be refused by ``other``, or answered in
        another shape (an input it does not take, even one this version only accepts and
        ignores; an input of another type or shape; one more input it requires; outputs
        of another width), or None. Categories seen do not count."""
        mine = {spec.name: spec for spec in self.inputs}
        theirs = {spec.name: spec for spec in other.inputs}
        missing = [name for name in mine if name not in theirs]
        if missing:
            return f"it does not take input(s) {missing[:5]} that requests may send"
        required = [
            name
            for name, spec in theirs.items()
            if name not in mine and spec.required and spec.kind != "ignored"
        ]
        if required:
            return f"it requires input(s) {required[:5]} that requests do not send"
        for name, spec in mine.items():
            other_spec = theirs[name]
            if "ignored" in (spec.kind, other_spec.kind):
                continue
            if (spec.datatype, spec.shape) != (other_spec.datatype, other_spec.shape):
                return (
                    f"input {name!r} is {other_spec.datatype} {other_spec.shape}, "
                    f"not {spec.datatype} {spec.shape}"
                )
            if spec.words_as_gaps and not other_spec.words_as_gaps:
                return f"input {name!r} takes numbers only, not words read as gaps"
        if self.width != other.width:
            return f"outputs differ ({other.width} columns, not {self.width})"
        return None

    @property
    def by_column(self) -> bool:
        """Whether the model takes one input per source column (raw values)."""
        return self.inputs[0].kind is not None

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.outputs[0]

    @property
    def row_shape(self) -> tuple[int, ...]:
        """The shape of one input row, e.g. ``(64,)`` or ``(1, 8, 8)``."""
        return tuple(self.input.shape[1:])

    @property
    def n_features(self) -> int:
        return math.prod(self.row_shape)

    @property
    def width(self) -> int:
        """Output columns: classes, or 1 for a regression value."""
        return self.output.shape[-1]


class AverageMember(BaseModel):
    """One model of a registered average: the search trial it was refit from, its family,
    its share of the average, and its own score on the evidence the average beat it on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trial: int = Field(ge=0, description="The trial's number in the search job that made it.")
    family: str = Field(description="Its model family, as search.families names it.")
    weight: float = Field(gt=0, le=1, description="Its share of the average (they sum to 1).")
    score: float | None = Field(
        default=None,
        description="Its own score in the search's first objective, on the same evidence as "
        "the average's (the validation rows, or out of fold).",
    )


class VersionConfig(BaseModel):
    """How a version was made: a search trial's parameters, its torch network (architecture
    and weights) while it has one, the columns it reads, its split, its compression."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: dict[str, Any] | None = Field(default=None, description="The trial's parameters.")
    architecture: NetworkConfig | None = Field(
        default=None, description="The torch network's configuration, tagged by 'kind'."
    )
    family: str | None = Field(
        default=None,
        description="The model family: mlp, cnn, gbdt, linear, or 'average' of several "
        "(None: uploaded, or recorded before families).",
    )
    members: list[AverageMember] | None = Field(
        default=None,
        description="An average's members, the search's best trial first (None: a single "
        "model, or an average registered before its members were recorded here).",
    )
    weights_key: str | None = Field(default=None, description="Artifact key of its weights.")
    weights_sha256: str | None = Field(
        default=None,
        description="sha256 of those weights (None: recorded before digests were kept).",
    )
    columns: list[int] | None = Field(
        default=None, description="Input columns the network reads (feature selection); None: all."
    )
    split_seed: int | None = Field(default=None, description="Seed of the split it was trained on.")
    fitted_on: Literal["all_rows", "non_test_rows"] | None = Field(
        default=None,
        description="The rows a search's version was fitted on once its configuration was "
        "chosen: every labelled row (search.refit 'full'; its held-out metrics come from the "
        "same configuration fitted on the non-test rows), or the non-test rows only (its "
        "metrics are its own). None: not a search's version, or recorded before.",
    )
    fitted_rows: int | None = Field(
        default=None, ge=0, description="How many rows that fit used (None: not recorded)."
    )
    compression: dict[str, Any] | None = Field(
        default=None, description="Method, settings, chain and the method's report."
    )
    encoding: TableEncoding | None = Field(
        default=None,
        description="The preprocessing in front of the network (raw columns to features).",
    )
    trained_on: str | None = Field(
        default=None,
        description="Where a search trained its "
        "network: cpu, or cuda with the card's name (KILN_DEVICE); "
        "None for uploaded and compressed versions.",
    )
    weights_in_onnx: bool = Field(
        default=False,
        description="An uploaded graph of ordinary "
        "layers: the torch network is rebuilt from its file.",
    )
    untrainable: str | None = Field(
        default=None,
        description="Why an uploaded graph cannot "
        "become a trainable network (it can still be quantized "
        "or distilled).",
    )
    bytes_per_row: int | None = Field(
        default=None,
        ge=0,
        description="Uploaded graphs: the memory one more row of a request took in the "
        "probe (None: too little to measure); rows per request are capped from it.",
    )
    graph_class: Literal["bounded", "sandboxed"] | None = Field(
        default=None,
        description="For uploaded graphs: bounded (static analysis proved its cost linear "
        "in the rows) runs in the gateway like a searched model, sandboxed only in sandbox "
        "processes; None: not an upload, or uploaded before graphs were classified.",
    )
    graph_class_reason: str | None = Field(
        default=None,
        description="Why the uploaded graph is bounded or sandboxed, naming the first "
        "operator, tensor or domain that made it sandboxed.",
    )
    rows_independent: bool | None = Field(
        default=None,
        description="For bounded uploads: whether static analysis proved (and the probe "
        "saw) each row's answer depend on that row alone, so concurrent requests may share "
        "one run; false: each request runs alone (the reason says which node may mix rows).",
    )
    seconds_per_row: float | None = Field(
        default=None,
        ge=0,
        description="Uploaded graphs: the seconds one row took in the probe, timed in its "
        "largest measured batch (or alone); None: too quick to measure.",
    )
    load_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Uploaded graphs: the memory the loaded session held in the probe "
        "(constants folded at load included); the session cache counts it.",
    )

    @property
    def has_network(self) -> bool:
        """Whether torch weights exist (stored, or in the uploaded graph itself), so the
        version can be trained further."""
        return (self.weights_key is not None or self.weights_in_onnx) and (
            self.architecture is not None
        )

    @property
    def convolutional(self) -> bool:
        return isinstance(self.architecture, CNNConfig)

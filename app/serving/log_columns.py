"""The columns of a dataset made from a request log. A model that takes one input per column
logs each value under its column's name; a model of one tensor logs each row as a list,
whose values take the names of the columns the answering version learnt from (its
dataset's, when it is a table of that width) or, for an uploaded model without a dataset,
``<input>_0``, ``<input>_1``, ... Inputs a version accepts but never reads are kept as
empty columns, so a version trained on the new dataset accepts the same requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.db import Session
from app.datasets.repository import DatasetRepository
from app.registry.service import get_version

TensorNames = dict[str, list[str]]  # a tensor input -> the names of its values, in order


@dataclass(frozen=True)
class LogColumns:
    """How the answering versions' logged inputs become columns."""

    tensors: dict[int, TensorNames]  # per version number
    accepted: list[str]  # inputs accepted and never read: empty columns

    def cells(self, record: dict[str, Any], version: int) -> dict[str, Any]:
        """A logged row as CSV cells: a tensor's values under its columns' names."""
        names = self.tensors.get(version, {})
        cells: dict[str, Any] = {}
        for name, value in record.items():
            if not isinstance(value, list):
                cells[name] = value
            elif len(known := names.get(name, [])) == len(value):
                cells.update(zip(known, value, strict=True))
            else:
                cells.update({f"{name}_{index}": item for index, item in enumerate(value)})
        return cells


def log_columns(session: Session, model: str, versions: set[int]) -> LogColumns:
    """The columns of the logged rows the versions ``versions`` of ``model`` answered."""
    tensors: dict[int, TensorNames] = {}
    accepted: list[str] = []
    datasets = DatasetRepository(session)
    for number in sorted(versions):
        version = get_version(session, model, number)
        signature = version.signature
        for spec in signature.inputs:
            if (spec.kind == "ignored" or not spec.required) and spec.name not in accepted:
                accepted.append(spec.name)
        learnt = datasets.get(version.dataset_id) if version.dataset_id is not None else None
        if signature.by_column or learnt is None or learnt.encoding is not None:
            continue
        if len(learnt.feature_names) == signature.n_features:  # the table's own columns
            tensors[number] = {signature.input.name: list(learnt.feature_names)}
    return LogColumns(tensors=tensors, accepted=accepted)

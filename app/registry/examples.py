"""A ready predict request for one version, built from its signature (and, for a table
model, its dataset's profile): what ``/docs``, the dashboard's model page and ``GET
/v1/models/{name}/versions/{v}/example`` show a user to start from."""

from __future__ import annotations

import math
from typing import Any

from app.contracts.profile import ColumnProfile, DatasetProfile
from app.contracts.signature import Signature, TensorSpec
from app.core.db import Session
from app.registry.repository import VersionRepository
from app.tables import ModelVersion

Value = float | str | None


def _typical(spec: TensorSpec, column: ColumnProfile | None) -> Value:
    """A value of the column a real row could hold: the profile's mean (numbers), its most
    frequent category, its earliest date; without a profile, a neutral one."""
    if spec.kind == "categorical":
        if column is not None and column.top:
            return column.top[0].value
        return spec.categories[0] if spec.categories else ""
    if spec.kind == "datetime":
        return column.earliest if column is not None and column.earliest else "2024-01-31"
    if column is not None and column.mean is not None and math.isfinite(column.mean):
        return round(column.mean, 3)
    return 0.0


def example_record(signature: Signature, profile: DatasetProfile | None) -> dict[str, Value]:
    """One record keyed by column name: every column the model reads, none it ignores."""
    columns = {column.name: column for column in profile.columns} if profile else {}
    return {
        spec.name: _typical(spec, columns.get(spec.name))
        for spec in signature.inputs
        if spec.kind != "ignored" and spec.required
    }


def example_row(signature: Signature) -> list[float]:
    """One row of numbers for a model of one float tensor: zeros, as many as a row holds."""
    width = math.prod(size for size in signature.input.shape[1:] if size > 0)
    return [0.0] * width


def example_request(signature: Signature, profile: DatasetProfile | None) -> dict[str, Any]:
    """``{"inputs": [...]}`` with one row, in the form the version takes: a record for a
    table model (one input per column), else a row of numbers."""
    if signature.by_column:
        return {"inputs": [example_record(signature, profile)]}
    return {"inputs": [example_row(signature)]}


def version_example(session: Session, version: ModelVersion) -> dict[str, Any]:
    """``example_request`` for a stored version, with its dataset's profile if it has one."""
    dataset = VersionRepository(session).dataset_of(version)
    return example_request(version.signature, dataset.profile if dataset else None)

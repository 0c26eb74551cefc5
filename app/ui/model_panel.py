"""The model page's panel for one version: what it takes (its signature), a request to
start from (JSON, curl, Python, built from the signature), and how it did on its test
rows (per-class metrics and the confusion matrix of a classifier; the residuals of a
regressor), with a link to its dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from app.contracts.results import ReferenceScores
from app.core.db import Session
from app.evaluation.footprint import Footprint
from app.evaluation.scores import ResidualSummary
from app.registry.examples import version_example
from app.registry.service import isolation
from app.tables import ModelVersion
from app.ui.explain_panel import ImportanceShown, importance_shown

SHOWN_CATEGORIES = 8


@dataclass(frozen=True)
class ClassRow:
    label: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int


@dataclass(frozen=True)
class InputRow:
    name: str
    kind: str
    datatype: str
    shape: str
    values: str
    missing: str
    required: bool


def class_rows(matrix: list[list[int]], labels: list[Any]) -> list[ClassRow]:
    """Precision, recall and F1 of each class, from the confusion matrix (rows: true
    class, columns: predicted) measured on the test rows."""
    rows = []
    for index, counts in enumerate(matrix):
        hits, support = counts[index], sum(counts)
        predicted = sum(row[index] for row in matrix)
        precision = hits / predicted if predicted else None
        recall = hits / support if support else None
        f1 = (
            2 * precision * recall / (precision + recall)
            if precision is not None and recall is not None and precision + recall > 0
            else None
        )
        label = str(labels[index]) if index < len(labels) else str(index)
        rows.append(ClassRow(label, precision, recall, f1, support))
    return rows


def input_rows(version: ModelVersion) -> list[InputRow]:
    rows = []
    for spec in version.signature.inputs:
        categories = spec.categories or []
        values = ", ".join(categories[:SHOWN_CATEGORIES]) + (
            f" and {len(categories) - SHOWN_CATEGORIES} more"
            if len(categories) > SHOWN_CATEGORIES
            else ""
        )
        rows.append(
            InputRow(
                name=spec.name,
                kind=spec.kind or "tensor",
                datatype=spec.datatype,
                shape="["
                + ", ".join("batch" if size < 0 else str(size) for size in spec.shape)
                + "]",
                values=values,
                missing="null or absent" if spec.allows_missing else "no",
                required=spec.required and spec.kind != "ignored",
            )
        )
    return rows


def snippets(base_url: str, name: str, number: int, example: dict[str, Any]) -> dict[str, str]:
    """The example request as JSON, as a curl command and as Python (httpx)."""
    url = f"{base_url}/v1/models/{name}/predict?version={number}"
    compact = json.dumps(example, separators=(", ", ": "))
    curl = (
        'curl -s -H "Authorization: Bearer $KILN_API_KEY" '
        "-H 'Content-Type: application/json' \\\n"
        f"  -d '{compact.replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}' \\\n"
        f"  '{url}'"
    )
    python = (
        "import os\n\nimport httpx\n\n"
        f'answer = httpx.post("{url}",\n'
        '                    headers={"Authorization": '
        "f\"Bearer {os.environ['KILN_API_KEY']}\"},\n"
        f"                    json={example!r})\n"
        "print(answer.json())"
    )
    return {"json": json.dumps(example, indent=2), "curl": curl, "python": python}


@dataclass(frozen=True)
class ReferenceRow:
    """One line of the panel's "is it any good" table (on the search's evidence)."""

    name: str
    score: float
    note: str


class _Validation(BaseModel):
    reference: ReferenceScores | None = None


class _SearchEvidence(BaseModel):
    validation: _Validation | None = None


def search_reference(version: ModelVersion) -> ReferenceScores | None:
    """The references a search stored with its winner (``metrics.validation.reference``);
    None for uploaded or compressed versions, or metrics of another shape."""
    try:
        stored = _SearchEvidence.model_validate(version.metrics or {})
    except ValidationError:
        return None
    return stored.validation.reference if stored.validation else None


class ShownMetrics(BaseModel):
    """The parts of a version's stored metrics the panel shows: a classifier's confusion
    matrix, a regressor's residuals."""

    confusion_matrix: list[list[int]] | None = None
    residuals: ResidualSummary | None = None
    held_out_from: str | None = None  # the model the test rows scored, when not this one

    @classmethod
    def of(cls, version: ModelVersion) -> ShownMetrics:
        """What ``version`` stores of them; nothing, for metrics of another shape."""
        try:
            return cls.model_validate(version.metrics or {})
        except ValidationError:
            return cls()


def reference_rows(version: ModelVersion) -> tuple[str | None, list[ReferenceRow]]:
    """The winner's validation score beside a constant prediction's and a linear model's,
    as the search measured them (none for uploaded or compressed versions)."""
    reference = search_reference(version)
    if reference is None:
        return None, []
    constant = "Majority class" if version.class_labels else "Mean of the target"
    rows = [
        ReferenceRow("This model", reference.winner, "its validation score"),
        ReferenceRow(constant, reference.baseline, "the same answer for every row"),
    ]
    if reference.linear is not None:
        trial = reference.linear_trial
        note = f"trial {trial}" if trial is not None else "fitted for this reference"
        rows.append(ReferenceRow("Linear model", reference.linear, note))
    return reference.metric, rows


@dataclass(frozen=True)
class VersionPanel:
    """Everything the panel shows for one version (``model.html``)."""

    runs_in: str
    runs_in_reason: str
    family: str | None
    reference_metric: str | None
    references: list[ReferenceRow]
    version: int
    dataset_id: int | None
    inputs: list[InputRow]
    snippets: dict[str, str]
    classes: list[ClassRow]
    matrix: list[list[int]] | None
    labels: list[str]
    residuals: ResidualSummary | None
    held_out_from: str | None  # a full refit's test figures come from its non-test fit
    footprint: Footprint | None = None  # memory a run takes, energy per 1,000 rows
    importance: ImportanceShown | None = None  # global importance, or why there is none


def version_panel(
    session: Session, base_url: str, name: str, version: ModelVersion
) -> VersionPanel:
    """Everything the panel shows for ``version``."""
    example = version_example(session, version)
    metrics = ShownMetrics.of(version)
    matrix = metrics.confusion_matrix
    labels = list(version.class_labels or [])
    metric, references = reference_rows(version)
    config = version.config
    runs_in, why = isolation(session, version)
    return VersionPanel(
        runs_in=runs_in,
        runs_in_reason=why,
        family=config.family if config is not None else None,
        reference_metric=metric,
        references=references,
        version=version.version,
        dataset_id=version.dataset_id,
        inputs=input_rows(version),
        snippets=snippets(base_url, name, version.version, example),
        classes=class_rows(matrix, labels) if matrix else [],
        matrix=matrix,
        labels=[str(label) for label in labels] or [str(i) for i in range(len(matrix or []))],
        residuals=metrics.residuals,
        held_out_from=metrics.held_out_from,
        footprint=Footprint.of_metrics(version.metrics),
        importance=importance_shown(name, version),
    )

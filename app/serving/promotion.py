"""Promotion: a version takes an alias's whole traffic, gated by a statistical test on the
evidence the loop gathered, or by hand.

- ``labelled``: both versions answer the rows of a labelled dataset (one made from the
  request log, say). An exact one-sided sign test on the rows where exactly one of them
  is right (classification: McNemar's exact test; regression: which one is closer) must
  find the candidate better at level ``alpha``.
- ``agreement``: the candidate ran as the alias's shadow; the Wilson lower bound (one-sided,
  ``1 - alpha``) of the share of rows where it agreed with the version that answered must
  reach ``min_agreement`` over at least ``min_rows`` rows: it behaves like what serves.
- ``manual``: no test; someone decided.

A gate that does not pass changes nothing and says why, with the numbers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from app.contracts.enums import Task
from app.core.db import Session
from app.core.errors import InvalidInput
from app.datasets.service import get_dataset, load_arrays, load_raw
from app.registry import monitoring
from app.registry.service import get_model, get_version
from app.registry.traffic import alias_policy, set_traffic
from app.serving.runtime import Feeds, LoadedModel
from app.storage import ArtifactStore

Gate = Literal["labelled", "agreement", "manual"]
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class GateRules:
    alpha: float = 0.05
    min_agreement: float = 0.95
    min_rows: int = 200


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    evidence: dict[str, Any]  # as the answer and the model's event show it, per gate
    primary: int


@dataclass(frozen=True)
class LabelledEvidence:
    """Both versions on a labelled dataset's rows: the rows where only the candidate
    (``better``) or only the primary (``worse``) was right (closer), and each one's score
    (``metric``: accuracy, or rmse for a regressor)."""

    rows: int
    better: int
    worse: int
    metric: Literal["accuracy", "rmse"]
    primary_score: float
    candidate_score: float

    def as_json(self) -> dict[str, int | float]:
        return {
            "rows": self.rows,
            "better": self.better,
            "worse": self.worse,
            f"primary_{self.metric}": self.primary_score,
            f"candidate_{self.metric}": self.candidate_score,
        }


def wilson_lower(successes: int, trials: int, alpha: float) -> float:
    """The one-sided lower confidence bound of a share (Wilson's score interval)."""
    from scipy.stats import norm  # the gateway loads scipy only when a gate runs

    if trials == 0:
        return 0.0
    z = float(norm.ppf(1 - alpha))
    share = successes / trials
    centre = share + z * z / (2 * trials)
    spread = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return (centre - spread) / (1 + z * z / trials)


def sign_test(better: int, worse: int) -> float:
    """p-value that the candidate is no better: ``better`` rows it wins, ``worse`` it loses."""
    from scipy.stats import binomtest

    if better + worse == 0:
        return 1.0
    return float(binomtest(better, better + worse, 0.5, alternative="greater").pvalue)


def _feeds(model: LoadedModel, raw: dict[str, pa.Array] | None, features: np.ndarray) -> Feeds:
    if model.columns is None:
        return model.feeds_of(features)
    if raw is None:
        raise InvalidInput("dataset_id: this dataset has no raw columns for a table model")
    feeds: Feeds = {}
    for column in model.columns:
        if not column.required:
            continue
        if column.name not in raw:
            raise InvalidInput(f"dataset_id: the dataset has no column {column.name!r}")
        values = raw[column.name]
        if column.datatype == "FP32":
            feeds[column.name] = np.asarray(values, dtype=np.float32).reshape(-1, 1)
        else:
            text = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
            feeds[column.name] = np.asarray(
                ["" if v is None else str(v) for v in text], dtype=object
            ).reshape(-1, 1)
    return feeds


def _outputs(
    model: LoadedModel, raw: dict[str, pa.Array] | None, features: np.ndarray
) -> np.ndarray:
    """The model's outputs over every row, in chunks no larger than one of its requests may
    be (a bounded upload's cap from its measured memory and time per row)."""
    rows = len(features)
    step = model.max_rows(CHUNK_ROWS)
    parts = []
    for start in range(0, rows, step):
        chunk_raw = (
            {name: values[start : start + step] for name, values in raw.items()}
            if raw is not None
            else None
        )
        parts.append(model.run(_feeds(model, chunk_raw, features[start : start + step])))
    return np.concatenate(parts).reshape(rows, -1)


def labelled_evidence(
    session: Session,
    store: ArtifactStore,
    load: Callable[[int], LoadedModel],
    *,
    primary: int,
    candidate: int,
    dataset_id: int,
    max_rows: int,
) -> LabelledEvidence:
    """Both versions on the labelled dataset's first ``max_rows`` rows."""
    dataset = get_dataset(session, dataset_id)
    if dataset.deleted_at is not None:
        raise InvalidInput(f"dataset_id: dataset {dataset_id}'s files were deleted")
    arrays = load_arrays(store, dataset)
    rows = np.arange(min(len(arrays.target), max_rows))
    raw = load_raw(store, dataset, rows) if dataset.encoding is not None else None
    features = arrays.features[rows]
    truth = arrays.target[rows]
    first, second = load(primary), load(candidate)
    if first.task != dataset.task:
        raise InvalidInput(f"dataset_id: dataset {dataset_id} is not a {first.task} dataset")
    answers = [_outputs(model, raw, features) for model in (first, second)]
    if dataset.task == Task.CLASSIFICATION:
        labels = [str(label) for label in dataset.class_labels or []]
        expected = np.array([labels[int(index)] for index in truth], dtype=object)
        right = [
            np.array([str(model.labels[i]) if model.labels else str(i) for i in a.argmax(axis=1)])
            == expected
            for model, a in zip((first, second), answers, strict=True)
        ]
        return LabelledEvidence(
            rows=len(rows),
            better=int(np.sum(right[1] & ~right[0])),
            worse=int(np.sum(right[0] & ~right[1])),
            metric="accuracy",
            primary_score=float(right[0].mean()),
            candidate_score=float(right[1].mean()),
        )
    errors = [np.abs(a[:, 0] - truth) for a in answers]
    return LabelledEvidence(
        rows=len(rows),
        better=int(np.sum(errors[1] < errors[0])),
        worse=int(np.sum(errors[0] < errors[1])),
        metric="rmse",
        primary_score=float(np.sqrt(np.mean(errors[0] ** 2))),
        candidate_score=float(np.sqrt(np.mean(errors[1] ** 2))),
    )


def promote(
    session: Session,
    store: ArtifactStore,
    load: Callable[[int], LoadedModel],
    *,
    name: str,
    alias: str,
    candidate: int,
    gate: Gate,
    dataset_id: int | None,
    rules: GateRules,
    max_rows: int,
) -> Promotion:
    """Run the gate; when it passes, ``candidate`` takes all of ``alias``'s traffic (its
    split and shadow end) and the model records a 'promotion' event."""
    model = get_model(session, name)
    get_version(session, name, candidate)  # 404 naming it
    policy = alias_policy(session, model, alias)
    if policy is None:
        raise InvalidInput(f"alias: model {name!r} has no alias {alias!r} to promote within")
    primary = policy.version
    if candidate == primary and policy.split is None and policy.shadow is None:
        raise InvalidInput(f"version: version {candidate} already takes all of {alias!r}")
    evidence: dict[str, Any] = {"gate": gate, "primary_version": primary}
    if gate == "labelled":
        if dataset_id is None:
            raise InvalidInput("dataset_id: the labelled gate needs a labelled dataset")
        labelled = labelled_evidence(
            session,
            store,
            load,
            primary=primary,
            candidate=candidate,
            dataset_id=dataset_id,
            max_rows=max_rows,
        )
        p_value = sign_test(labelled.better, labelled.worse)
        evidence.update(labelled.as_json(), p_value=p_value)
        passed = p_value < rules.alpha
        reason = (
            f"on {labelled.rows} labelled rows the candidate was right where the primary "
            f"was wrong {labelled.better} times, and the reverse {labelled.worse} "
            f"times: one-sided exact sign test p = {p_value:.4g} "
            f"{'<' if passed else '>='} alpha {rules.alpha:g}"
        )
    elif gate == "agreement":
        found = [
            s
            for s in monitoring.shadow_stats(session, name)
            if s.primary_version == primary and s.shadow_version == candidate
        ]
        if not found or not found[0].rows:
            raise InvalidInput(
                f"gate: no shadow comparison of version {candidate} against version {primary} "
                f"yet: deploy it as {alias!r}'s shadow first (or use the labelled gate)"
            )
        stats = found[0]
        agreed = round((stats.agreement or 0.0) * stats.rows)
        lower = wilson_lower(agreed, stats.rows, rules.alpha)
        evidence.update({"rows": stats.rows, "agreement": stats.agreement, "lower_bound": lower})
        passed = stats.rows >= rules.min_rows and lower >= rules.min_agreement
        reason = (
            f"the shadow agreed on {stats.agreement:.2%} of {stats.rows} rows; its "
            f"{1 - rules.alpha:.0%} lower bound {lower:.4f} "
            f"{'>=' if lower >= rules.min_agreement else '<'} {rules.min_agreement:g}"
            + ("" if stats.rows >= rules.min_rows else f", and fewer rows than {rules.min_rows}")
        )
    else:
        passed, reason = True, "promoted by hand (no test)"
    if passed:
        set_traffic(session, name=name, alias=alias, version=candidate)
        monitoring.add_event(
            session,
            name,
            "promotion",
            f"version {candidate} takes all of {alias!r} (was version {primary}): {reason}",
            evidence,
        )
    return Promotion(promoted=passed, reason=reason, evidence=evidence, primary=primary)

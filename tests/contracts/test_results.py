"""Job results are typed: each kind's model reads a stored result back and writes it out
exactly as it was stored (the fields that were set, extras included); a result that does
not fit its kind's model is shown as stored, never dropped or a 500."""

from __future__ import annotations

from typing import Any

import pytest

from app.api.schemas import JobRead
from app.contracts.results import (
    CompressResult,
    PredictResult,
    RetrainResult,
    SearchResult,
    StoredResult,
    result_as,
)
from app.kinds import JOB_KINDS
from app.tables import Job

ROW = {
    "model": "m",
    "version": 1,
    "role": "parent",
    "method": None,
    "chain": [],
    "parent_version": None,
    "accuracy": 0.9,
    "params": 10,
    "size_bytes": 100,
    "gzip_bytes": 80,
    "latency_p50_ms": 0.1,
    "latency_p95_ms": 0.2,
    "latency_b64_p50_ms": 0.3,
    "latency_b64_p95_ms": 0.4,
    "size_ratio": 1.0,
    "gzip_ratio": 1.0,
    "speedup": 1.0,
    "speedup_b64": 1.0,
    "recommended": True,
}
TABLE = {
    "model_name": "m",
    "parent_version": 1,
    "max_accuracy_drop": 1.0,
    "prefer": "size",
    "recommended_version": 1,
    "reason": "no variant qualified",
    "rows": [ROW],
}
PLAN = {
    "objectives": [{"metric": "accuracy", "direction": "maximize"}],
    "algorithm": "tpe",
    "trials_at_once": 2,
}
STORED: dict[str, dict[str, Any]] = {
    "search": {
        "model_name": "m",
        "version": 1,
        "trial": 3,
        "metrics": {"accuracy": 0.9},
        "versions": [1],
        "plan": PLAN,
        "selection": {
            "validation": "holdout",
            "validation_rows": 30,
            "refit_on_rows": 120,
            "refit_epochs": 7,
        },
    },
    "retrain": {
        "model_name": "m",
        "version": 4,
        "trial": 2,
        "metrics": {"accuracy": 0.91},
        "versions": [4],
        "plan": PLAN,
        "source_version": 3,
        "retrain_mode": "search",
        "deployment": {"alias": "prod", "mode": "shadow", "version": 4, "deployed": True},
    },
    "compress": {
        "model_name": "m",
        "parent_version": 1,
        "versions": [],
        "recommended_version": 1,
        "recommendation_reason": "no variant qualified",
        "compression": TABLE,
    },
    "predict": {
        "output": {
            "key": "jobs/1/out.csv",
            "format": "csv",
            "media_type": "text/csv",
            "sha256": "0" * 64,
            "size_bytes": 12,
        },
        "rows": 10,
        "resumed_at_row": 0,
        "seconds": 0.5,
        "rows_per_s": 20.0,
        "peak_rss_mb": 300.0,
        "rss_at_start_mb": 250.0,
        "model": "m",
        "version": 1,
    },
}
MODELS: dict[str, type[StoredResult]] = {
    "search": SearchResult,
    "compress": CompressResult,
    "predict": PredictResult,
    "retrain": RetrainResult,
}


def test_every_kind_names_its_result_model() -> None:
    assert {name: kind.result_model for name, kind in JOB_KINDS.items()} == MODELS


@pytest.mark.parametrize("kind", sorted(STORED))
def test_a_stored_result_reads_back_and_writes_out_as_stored(kind: str) -> None:
    stored = STORED[kind]
    typed = result_as(MODELS[kind], stored)
    assert typed is not None
    assert typed.stored_json() == stored
    with_extra = {**stored, "from_a_later_release": {"kept": True}}
    again = result_as(MODELS[kind], with_extra)
    assert again is not None and again.stored_json() == with_extra


@pytest.mark.parametrize("kind", sorted(STORED))
def test_the_api_shows_a_result_as_stored(kind: str) -> None:
    job = Job(id=1, kind=kind, result=STORED[kind])
    read = JOB_KINDS.read_result(job)
    assert isinstance(read, MODELS[kind])
    shown = JobRead.model_validate(
        {
            "id": 1,
            "kind": kind,
            "status": "succeeded",
            "dataset_id": None,
            "model_name": "m",
            "spec": {},
            "progress": {
                "done": 0,
                "total": 0,
                "trials_done": 0,
                "trials_total": 0,
                "best_value": None,
            },
            "attempt": 1,
            "max_attempts": 3,
            "worker": None,
            "error": None,
            "result": read,
            "created_at": "2026-01-01T00:00:00Z",
            "started_at": None,
            "finished_at": None,
            "updated_at": "2026-01-01T00:00:00Z",
        }
    )
    assert shown.model_dump(mode="json", exclude_unset=True)["result"] == STORED[kind]


def test_a_result_that_does_not_fit_is_shown_as_stored() -> None:
    odd = {"model_name": "m", "version": "not a number"}
    assert result_as(SearchResult, odd) is None
    assert JOB_KINDS.read_result(Job(id=1, kind="search", result=odd)) == odd
    assert JOB_KINDS.read_result(Job(id=1, kind="retired-kind", result=odd)) == odd
    assert JOB_KINDS.read_result(Job(id=1, kind="search", result=None)) is None


def test_a_recorder_may_store_any_result_model() -> None:
    assert StoredResult.model_validate({"answer": 42}).stored_json() == {"answer": 42}

"""The job-kind contract, for every kind ``app.kinds`` lists: a submitted job is sent to
its own queue under its own task after the commit; a worker claims it, runs the kind's
handler and records the outcome once; running the same message again changes nothing;
a job cancelled before a worker takes it is never run; its finished job's page shows what
its dashboard sections add. Real database, real broker, the real handlers (in this process:
the runner is what a worker's task calls). ``test_kind_surface`` checks the rest of what a
kind declares (result union, routes, sections, helper tasks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.contracts.enums import JobStatus
from app.contracts.results import PredictResult, result_as
from app.core.config import Settings
from app.core.db import session_scope
from app.datasets.service import create_dataset
from app.jobs.kinds import SubmitContext
from app.jobs.queue import JobQueue, make_celery, queue_for
from app.jobs.runner import run_job
from app.jobs.service import cancel_job
from app.kinds import JOB_KINDS, submit
from app.storage import get_store
from app.tables import Job, Model, ModelVersion, Trial
from tests.conftest import register
from tests.helpers import blobs_csv, ui_sign_in


@dataclass(frozen=True)
class Registry:
    """What the examples refer to: a 4-feature, 3-class dataset, a version that fits, and
    a model whose version a finished search job made (what a retrain runs again)."""

    dataset_id: int
    model: str
    version: int
    searched: str


@dataclass(frozen=True)
class Example:
    """A request for a job of the kind, and what its finished job's page shows for it."""

    request: Callable[[Registry], dict[str, Any]]
    on_page: str  # HTML a section of the kind's page adds


EXAMPLES: dict[str, Example] = {
    "search": Example(
        lambda r: {
            "kind": "search",
            "dataset_id": r.dataset_id,
            "model_name": "found",
            "search": {
                "max_trials": 1,
                "validation": "holdout",
                "space": {"n_layers": 1, "width": 8, "epochs": 2, "batch_size": 32, "patience": 0},
            },
        },
        on_page='id="chart-history"',
    ),
    "compress": Example(
        lambda r: {
            "kind": "compress",
            "source": {"model": r.model, "version": r.version},
            "dataset_id": r.dataset_id,
            "compression": {"methods": ["quantize_dynamic"]},
        },
        on_page='<section id="report">',
    ),
    "predict": Example(
        lambda r: {
            "kind": "predict",
            "model": r.model,
            "version": r.version,
            "dataset_id": r.dataset_id,
        },
        on_page='id="output"',
    ),
    "retrain": Example(
        lambda r: {
            "kind": "retrain",
            "model": r.searched,
            "dataset_id": r.dataset_id,
            "deploy": "canary",
            "weight": 20,
        },
        on_page='id="chart-history"',
    ),
}


def test_every_kind_has_an_example_here() -> None:
    assert set(EXAMPLES) == set(JOB_KINDS), "add an example for the new job kind"


@pytest.mark.parametrize("name", sorted(JOB_KINDS))
def test_the_kind_is_wired_from_its_one_entry(name: str) -> None:
    kind = JOB_KINDS[name]
    assert kind.name == name and kind.task_name == f"kiln.{name}"
    assert kind.create_model.model_fields["kind"].is_required()
    assert callable(kind.load_handler())


@pytest.fixture
def registry(settings: Settings, classifier_onnx: Path, tmp_path: Path) -> Registry:
    upload = tmp_path / "rows.csv"
    upload.write_bytes(blobs_csv(n_rows=90, labels=("a", "b", "c")))
    with session_scope(settings.database_url) as session:
        dataset = create_dataset(
            session,
            get_store(settings),
            upload=upload,
            filename="rows.csv",
            target="label",
            name=None,
            task=None,
            input_shape=None,
        )
        dataset_id = dataset.id
    version = register(settings, classifier_onnx, name="flowers", labels=["a", "b", "c"])
    searched = register(settings, classifier_onnx, name="searched", labels=["a", "b", "c"])
    with session_scope(settings.database_url) as session:  # as if a search had made it
        search = EXAMPLES["search"].request(Registry(dataset_id, "flowers", version, "searched"))
        made = Job(
            kind="search",
            status=JobStatus.SUCCEEDED,
            dataset_id=dataset_id,
            model_name="searched",
            spec={**search, "model_name": "searched"},
            max_attempts=1,
        )
        session.add(made)
        session.flush()
        row = session.scalar(
            select(ModelVersion)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(Model.name == "searched", ModelVersion.version == searched)
        )
        assert row is not None
        row.job_id, row.dataset_id, row.source = made.id, dataset_id, "search"
    return Registry(dataset_id=dataset_id, model="flowers", version=version, searched="searched")


def _submit(settings: Settings, registry: Registry, name: str) -> int:
    spec = JOB_KINDS[name].create_model.model_validate(EXAMPLES[name].request(registry))
    with session_scope(settings.database_url) as session:
        job = submit(
            SubmitContext(session, JobQueue(settings), settings, get_store(settings)), spec
        )
        return job.id


def _sent(settings: Settings, name: str) -> list[tuple[str, list[Any]]]:
    """Drain kind ``name``'s queue: (task, args) of each message."""
    found = []
    with make_celery(settings).connection_for_write() as connection:
        queue = connection.SimpleQueue(queue_for(settings, name))
        try:
            while True:
                message = queue.get(timeout=1)
                found.append((message.headers["task"], message.payload[0]))
                message.ack()
        except queue.Empty:
            pass
        finally:
            queue.close()
    return found


def _recorded(settings: Settings, job_id: int) -> tuple[Any, ...]:
    """What a run leaves behind: the job's outcome and the rows it registered."""
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        versions = session.scalar(select(func.count()).select_from(ModelVersion))
        trials = session.scalar(select(func.count()).select_from(Trial))
        return (
            job.status,
            job.attempt,
            job.error,
            job.result,
            job.finished_at,
            job.progress_done,
            versions,
            trials,
        )


@pytest.mark.parametrize("name", sorted(JOB_KINDS))
def test_claim_run_record_once_and_a_rerun_is_a_no_op(
    settings: Settings, registry: Registry, client: TestClient, keys: dict[str, str], name: str
) -> None:
    kind = JOB_KINDS[name]
    with session_scope(settings.database_url) as session:
        versions_before = session.scalar(select(func.count()).select_from(ModelVersion))
    job_id = _submit(settings, registry, name)
    assert _sent(settings, name) == [(kind.task_name, [job_id])]
    handler = kind.load_handler()
    run_job(settings, job_id, handler)
    first = _recorded(settings, job_id)
    status, attempt, error, result = first[:4]
    assert (status, attempt, error) == (JobStatus.SUCCEEDED, 1, None)
    typed = result_as(kind.result_model, result)
    assert typed is not None, f"{name}'s result does not read back as {kind.result_model}"
    assert typed.stored_json() == result, "the result reads back as it was stored"
    if name != "predict":  # searches and compressions register versions
        assert first[6] > versions_before
    run_job(settings, job_id, handler)  # the broker redelivered the message
    assert _recorded(settings, job_id) == first
    # The files a kind names for deletion are its own job's, and its output among them.
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None
        outputs, scratch = kind.output_keys(job), kind.scratch_keys(session, job)
    assert all(key.startswith(f"jobs/{job_id}/") for key in [*outputs, *scratch])
    if isinstance(typed, PredictResult):
        assert typed.output.key in outputs
    # The finished job's page shows what its kind's sections add.
    ui_sign_in(client, keys["read"])
    page = client.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200, page.text
    assert EXAMPLES[name].on_page in page.text


@pytest.mark.parametrize("name", sorted(JOB_KINDS))
def test_a_job_cancelled_while_queued_is_never_run(
    settings: Settings, registry: Registry, name: str
) -> None:
    job_id = _submit(settings, registry, name)
    before = _recorded(settings, job_id)
    with session_scope(settings.database_url) as session:
        cancel_job(session, job_id)
    run_job(settings, job_id, JOB_KINDS[name].load_handler())
    status, attempt, *_, versions, trials = _recorded(settings, job_id)
    assert (status, attempt) == (JobStatus.CANCELLED, 0)
    assert (versions, trials) == before[6:]

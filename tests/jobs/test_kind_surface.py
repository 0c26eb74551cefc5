"""What a job kind declares is what the server offers, for every kind ``app.kinds`` lists:
its result model is in the API's result union, its routes are mounted under /v1/jobs and
guarded, its page sections are ones the dashboard builds, its helper tasks go to its own
queue and every worker registers them (with its job task), and its declaration modules
load without torch. (``test_kind_contract`` runs each kind's jobs, and renders each page.)"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import get_args

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from app.api.jobs import KIND_HTTP
from app.api.schemas import JobRead
from app.core.config import Settings
from app.jobs.queue import JobQueue, make_celery, queue_for
from app.kinds import JOB_KINDS, JobResult
from app.ui.job_sections import SECTIONS

KINDS = sorted(JOB_KINDS)
# The routes kinds added before they owned them: the same operation ids, as published.
KIND_OPERATIONS = {
    ("GET", "/v1/jobs/{job_id}/pareto"): "pareto_front_v1_jobs__job_id__pareto_get",
    ("GET", "/v1/jobs/{job_id}/report"): "compression_report_v1_jobs__job_id__report_get",
    ("GET", "/v1/jobs/{job_id}/output"): "job_output_v1_jobs__job_id__output_get",
    ("POST", "/v1/jobs/predict"): "submit_batch_prediction_v1_jobs_predict_post",
}


def _kind_routes(name: str) -> list[tuple[str, str]]:
    router = APIRouter(prefix="/v1/jobs")
    JOB_KINDS[name].add_routes(router, KIND_HTTP)
    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    return [(method, route.path) for route in routes for method in route.methods or ()]


@pytest.mark.parametrize("name", KINDS)
def test_the_result_union_holds_each_kinds_result(name: str) -> None:
    model = JOB_KINDS[name].result_model
    assert model in get_args(JobResult)
    assert model in get_args(JobRead.model_fields["result"].annotation)


def test_the_published_result_union_is_most_specific_first(app: FastAPI) -> None:
    schema = app.openapi()["components"]["schemas"]["JobRead"]["properties"]["result"]
    refs = [option["$ref"].rpartition("/")[2] for option in schema["anyOf"] if "$ref" in option]
    models = JOB_KINDS.result_models()
    assert refs == [model.__name__ for model in models]
    for position, model in enumerate(models):  # none after a model it extends
        assert not any(issubclass(model, earlier) for earlier in models[:position])


@pytest.mark.parametrize("name", KINDS)
def test_each_kinds_routes_are_mounted_and_guarded(app: FastAPI, name: str) -> None:
    paths = app.openapi()["paths"]
    for method, path in _kind_routes(name):
        operation = paths[path][method.lower()]
        assert operation["security"] == [{"HTTPBearer": []}], (method, path)
        assert "jobs" in operation["tags"]
        if (method, path) in KIND_OPERATIONS:
            assert operation["operationId"] == KIND_OPERATIONS[(method, path)]


def test_the_kinds_routes_are_the_ones_they_had() -> None:
    mounted = {route for name in KINDS for route in _kind_routes(name)}
    assert set(KIND_OPERATIONS) <= mounted


@pytest.mark.parametrize("name", KINDS)
def test_each_kinds_page_sections_are_built_by_the_dashboard(name: str) -> None:
    sections = JOB_KINDS[name].page_sections
    assert set(sections) <= set(SECTIONS), f"{name}: no such section in app.ui.job_sections"
    assert len(set(sections)) == len(sections)


@pytest.mark.parametrize("name", KINDS)
def test_each_kinds_helper_tasks_go_to_its_queue(settings: Settings, name: str) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # the embedded broker's file is there
    kind = JOB_KINDS[name]
    helpers = kind.load_helpers()
    assert set(helpers) == set(kind.helper_tasks)
    for task in helpers:
        JobQueue(settings).send_helper(name, task, 7, 1)
    sent = []
    with make_celery(settings).connection_for_write() as connection:
        queue = connection.SimpleQueue(queue_for(settings, name))
        try:
            while True:
                message = queue.get(timeout=1)
                sent.append((message.headers["task"], message.payload[0]))
                message.ack()
        except queue.Empty:
            pass
        finally:
            queue.close()
    assert sent == [(task, [7, 1]) for task in helpers]


def test_a_worker_registers_every_kinds_tasks() -> None:
    """In a process of its own, as ``kiln worker`` starts: every kind's job task and every
    helper task a kind declares are registered."""
    code = (
        "import json; from workers.celery_app import celery_app; import workers.tasks; "
        "print(json.dumps(sorted(name for name in celery_app.tasks if name.startswith('kiln.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=300, capture_output=True, text=True
    )
    registered: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {kind.task_name for kind in JOB_KINDS.values()}
    expected |= {task for kind in JOB_KINDS.values() for task in kind.helper_tasks}
    assert set(registered) == expected


def test_every_kinds_declarations_load_without_torch() -> None:
    """A kind's class, its request, stored and result models and its routes are what the
    gateway loads; the import contract over ``app.kinds`` covers them, and so does this."""
    code = (
        "import sys, importlib; from fastapi import APIRouter; from app.kinds import JOB_KINDS\n"
        "from app.api.jobs import KIND_HTTP\n"
        "for kind in JOB_KINDS.values():\n"
        "    kind.add_routes(APIRouter(), KIND_HTTP)\n"
        "    for model in (type(kind), kind.create_model, kind.stored_model, kind.result_model):\n"
        "        importlib.import_module(model.__module__)\n"
        "assert 'torch' not in sys.modules, 'a kind declaration imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

"""The job kinds this server runs: the one list. Everything that differs by kind is
derived from it: the API's request and result unions, the submit dispatch, the routes each
kind adds under /v1/jobs, the broker's queues, the workers' tasks (each kind's job task
and helper tasks) and the sections of each job's dashboard page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel

from app.batch.kind import PredictKind
from app.compression.kind import CompressKind
from app.contracts.results import StoredResult
from app.jobs.kinds import KindMap, SubmitContext
from app.retrain.kind import RetrainKind
from app.search.kind import SearchKind
from app.tables import Job

JOB_KINDS = KindMap([SearchKind(), CompressKind(), PredictKind(), RetrainKind()])

if TYPE_CHECKING:
    JobCreate = BaseModel
    JobResult = StoredResult
else:
    # What POST /v1/jobs takes: one spec per kind (the route tells them apart by ``kind``).
    JobCreate = Union[JOB_KINDS.create_models()]  # noqa: UP007
    # What a job's result is once it succeeded: its kind's model (each ahead of those it
    # extends, so that each result validates and serializes as its own model).
    JobResult = Union[JOB_KINDS.result_models()]  # noqa: UP007


def submit(context: SubmitContext, spec: Any) -> Job:
    """Check and record a job of the kind ``spec`` names (sent to the broker after commit)."""
    return JOB_KINDS[spec.kind].submit(context, spec)

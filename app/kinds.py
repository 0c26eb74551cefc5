"""The job kinds this server runs: the one list. The API's request union, the submit
dispatch, the broker's queues and the workers' tasks are all derived from it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel

from app.batch.kind import PredictKind
from app.compression.kind import CompressKind
from app.jobs.kinds import KindMap, SubmitContext
from app.retrain.kind import RetrainKind
from app.search.kind import SearchKind
from app.tables import Job

JOB_KINDS = KindMap([SearchKind(), CompressKind(), PredictKind(), RetrainKind()])

if TYPE_CHECKING:
    JobCreate = BaseModel
else:  # what POST /v1/jobs takes: one spec per kind (the route tells them apart by ``kind``)
    JobCreate = Union[tuple(kind.create_model for kind in JOB_KINDS.values())]  # noqa: UP007


def submit(context: SubmitContext, spec: Any) -> Job:
    """Check and record a job of the kind ``spec`` names (sent to the broker after commit)."""
    return JOB_KINDS[spec.kind].submit(context, spec)

"""Job kinds as plug-ins. A kind (search, compress, predict) says what ``POST /v1/jobs``
takes for it, checks and records a submitted job, and names the handler a worker runs.
Each kind lives in its own package (``app.search.kind``, ``app.compression.kind``,
``app.batch.kind``); ``app.kinds`` is the one place that lists them, and the API's request
union, the submit dispatch, the broker's task names and the workers' tasks all come from
that list.

The handler is named, not imported: it trains networks with torch on the worker, and the
gateway (which imports every kind to check submissions) never loads torch."""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from app.contracts.enums import JobStatus
from app.contracts.results import StoredResult, result_as
from app.core.config import Settings
from app.core.db import Session, defer_until_commit, utcnow
from app.core.errors import BrokenInvariant
from app.jobs.queue import JobQueue, task_name
from app.jobs.repository import JobRepository
from app.storage import ArtifactStore
from app.tables import Job

if TYPE_CHECKING:
    from app.jobs.runner import JobContext, Recorder

    Handler = Callable[[JobContext], Recorder]

SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class SubmitContext:
    """What a kind may use while it checks and records a job: the request's transaction
    (the job is sent to the broker only after it commits), the queue, settings, store."""

    session: Session
    queue: JobQueue
    settings: Settings
    store: ArtifactStore


class JobKind(ABC, Generic[SpecT]):
    """One kind of job. ``name`` is its ``kind`` in requests, the stored ``Job.kind``, its
    broker queue's suffix and its task's name (``kiln.<name>``)."""

    name: ClassVar[str]
    create_model: type[SpecT]  # the request body POST /v1/jobs takes, tagged by ``kind``
    progress_unit: ClassVar[str]  # what trials_done / trials_total count
    handler_path: ClassVar[str]  # "module:function" the worker runs (see the docstring)
    result_model: ClassVar[type[StoredResult]]  # what its handler's recorder stores

    @property
    def task_name(self) -> str:
        return task_name(self.name)

    @abstractmethod
    def submit(self, context: SubmitContext, spec: SpecT) -> Job:
        """Check ``spec`` against the registry, the datasets and the server's limits
        (InvalidInput naming the field), then record the queued job with ``enqueue``."""

    def load_handler(self) -> Handler:
        """The worker's handler: imports the module that runs this kind (torch included)."""
        module_name, _, attribute = self.handler_path.partition(":")
        handler = getattr(importlib.import_module(module_name), attribute, None)
        if not callable(handler):
            raise BrokenInvariant(
                f"job kind {self.name!r}: handler {self.handler_path!r} is not a function"
            )
        return handler

    def time_budget_s(self, spec: Mapping[str, Any]) -> float | None:
        """The wall time a stored job of this kind was given, when it is told in time."""
        return None

    def best_metric(self, session: Session, job: Job) -> str | None:
        """The metric ``Job.best_value`` is in, for kinds that keep a best value."""
        return None

    def output_keys(self, job: Job) -> list[str]:
        """Artifact keys of what a finished job keeps for its user besides versions (a batch
        job's output and uploaded input): deleted by ``DELETE /v1/jobs/{id}/files`` or
        after ``KILN_OUTPUT_RETENTION_S``."""
        return []

    def scratch_keys(self, session: Session, job: Job) -> list[str]:
        """Artifact keys only a running job needs (a batch job's parts, a data-parallel
        trial's work file that a crash left behind): deleted after the job finishes, by
        ``KILN_SCRATCH_RETENTION_S``. Deleting a key that holds nothing is harmless."""
        return []


def enqueue(
    context: SubmitContext,
    *,
    kind: str,
    spec: dict[str, Any],
    dataset_id: int | None,
    model_name: str,
    total: int,
) -> Job:
    """Record a queued job of any kind; it is sent to the broker after the commit. A broker
    that does not answer is Unavailable (503) here, before anything is recorded."""
    context.queue.check_reachable()
    now = utcnow()
    job = JobRepository(context.session).add(
        Job(
            kind=kind,
            status=JobStatus.QUEUED,
            dataset_id=dataset_id,
            model_name=model_name,
            spec=spec,
            max_attempts=context.settings.job_max_attempts,
            trials_total=total,
            attempt=0,
            trials_done=0,
            sends=1,
            enqueued_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    defer_until_commit(context.session, functools.partial(context.queue.send, job.id, job.kind))
    return job


class KindMap(Mapping[str, JobKind[Any]]):
    """The job kinds a server runs, by name; built once, by ``app.kinds``."""

    def __init__(self, kinds: list[JobKind[Any]]) -> None:
        self._kinds: dict[str, JobKind[Any]] = {}
        for kind in kinds:
            if kind.name in self._kinds:
                raise BrokenInvariant(f"job kind {kind.name!r} is listed twice")
            declared = kind.create_model.model_fields["kind"].annotation
            if getattr(declared, "__args__", None) != (kind.name,):
                raise BrokenInvariant(
                    f"job kind {kind.name!r}: {kind.create_model.__name__}"
                    f".kind must be Literal[{kind.name!r}]"
                )
            self._kinds[kind.name] = kind

    def __getitem__(self, name: str) -> JobKind[Any]:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def read_result(self, job: Job) -> StoredResult | dict[str, Any] | None:
        """A stored job's result, typed by its kind; as stored when the kind is no longer
        run or the result does not fit its model (another release wrote it)."""
        kind = self._kinds.get(job.kind)
        typed = result_as(kind.result_model, job.result) if kind is not None else None
        return typed if typed is not None else job.result

    def progress_unit(self, name: str) -> str:
        """What a stored job's progress counts (a kind no longer run: trials)."""
        kind = self._kinds.get(name)
        return kind.progress_unit if kind is not None else "trials"

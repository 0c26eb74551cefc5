"""Job kinds as plug-ins. A kind (search, compress, predict, retrain) owns its whole
surface: what ``POST /v1/jobs`` takes for it and what its jobs keep as their spec, the
result it stores, its progress unit, the handler a worker runs and any helper tasks that
handler sends, the routes it adds under ``/v1/jobs``, and the sections of its dashboard
page. Each kind lives in its own package (``app.search.kind``, ...); ``app.kinds`` is the
one place that lists them, and everything that differs by kind (the request and result
unions, the submit dispatch, the broker's tasks and queues, the workers' tasks, the routes
under /v1/jobs, the job page) is derived from that list.

Handlers and helper tasks are named, not imported: they train networks with torch on the
worker, and the gateway (which imports every kind to check submissions) never loads torch.
A kind's routes are imported only when the gateway asks for them, so workers never load
the web framework."""

from __future__ import annotations

import functools
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from app.contracts.enums import JobStatus
from app.contracts.results import StoredResult, result_as
from app.core.config import Settings
from app.core.db import Session, defer_until_commit, utcnow
from app.core.errors import BrokenInvariant, Conflict
from app.jobs.queue import JobQueue, task_name
from app.jobs.repository import JobRepository
from app.storage import ArtifactStore
from app.tables import Job

if TYPE_CHECKING:
    from fastapi import APIRouter

    from app.jobs.http import JobHttp
    from app.jobs.runner import JobContext, Recorder

    Handler = Callable[[JobContext], Recorder]

SpecT = TypeVar("SpecT", bound=BaseModel)  # what POST /v1/jobs takes for the kind
StoredT = TypeVar("StoredT", bound=BaseModel)  # what its jobs keep in Job.spec
HelperTask = Callable[..., None]  # called as function(settings, *the message's args)


@dataclass(frozen=True)
class SubmitContext:
    """What a kind may use while it checks and records a job: the request's transaction
    (the job is sent to the broker only after it commits), the queue, settings, store."""

    session: Session
    queue: JobQueue
    settings: Settings
    store: ArtifactStore


def _load(kind: str, path: str) -> Callable[..., Any]:
    """The function ``path`` ("module:function") names, imported now (torch included)."""
    module_name, _, attribute = path.partition(":")
    function = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(function):
        raise BrokenInvariant(f"job kind {kind!r}: {path!r} is not a function")
    return function


class JobKind(ABC, Generic[SpecT, StoredT]):
    """One kind of job. ``name`` is its ``kind`` in requests, the stored ``Job.kind``, its
    broker queue's suffix and its task's name (``kiln.<name>``)."""

    name: ClassVar[str]
    create_model: type[SpecT]  # the request body POST /v1/jobs takes, tagged by ``kind``
    stored_model: type[StoredT]  # what ``submit`` keeps in Job.spec, read back typed
    progress_unit: ClassVar[str]  # what progress_done / progress_total count
    handler_path: ClassVar[str]  # "module:function" the worker runs (see the docstring)
    result_model: ClassVar[type[StoredResult]]  # what its handler's recorder stores
    # Broker tasks its handler sends besides the job's own (a search's helpers): task name
    # -> "module:function"; sent on this kind's queue, registered by every worker.
    helper_tasks: ClassVar[Mapping[str, str]] = {}
    # The dashboard sections its job page shows, in order (``app.ui.job_sections`` names
    # the sections there are; the page shows the facts, progress and trials of every job).
    page_sections: ClassVar[tuple[str, ...]] = ()

    @property
    def task_name(self) -> str:
        return task_name(self.name)

    @abstractmethod
    def submit(self, context: SubmitContext, spec: SpecT) -> Job:
        """Check ``spec`` against the registry, the datasets and the server's limits
        (InvalidInput naming the field), then record the queued job with ``enqueue``."""

    def read_spec(self, job: Job) -> StoredT:
        """The job's stored spec as this kind's model; Conflict naming the job when another
        release stored it in a shape this one cannot read (the job cannot run here)."""
        try:
            return self.stored_model.model_validate(job.spec)
        except ValidationError as unreadable:
            first = unreadable.errors()[0]
            where = ".".join(map(str, first["loc"])) or "spec"
            raise Conflict(
                f"job {job.id}: its stored spec does not fit this release's {self.name} job "
                f"({where}: {first['msg']}); submit it again"
            ) from None

    def spec_if_readable(self, job: Job) -> StoredT | None:
        """``read_spec``, or None where it cannot be read: for what only shows a job."""
        try:
            return self.read_spec(job)
        except Conflict:
            return None

    def load_handler(self) -> Handler:
        """The worker's handler: imports the module that runs this kind (torch included)."""
        handler: Handler = _load(self.name, self.handler_path)
        return handler

    def load_helpers(self) -> dict[str, HelperTask]:
        """The helper tasks by name, imported (on a worker: torch included)."""
        return {task: _load(self.name, path) for task, path in self.helper_tasks.items()}

    def add_routes(self, router: APIRouter, http: JobHttp) -> None:
        """Add the routes this kind offers to ``router``, /v1/jobs's (the HTTP layer lends
        ``http``: its session, scopes and parameters). A kind imports its routes' module
        here, not at the top, so that workers never load the web framework."""

    def time_budget_s(self, spec: StoredT) -> float | None:
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
    spec: BaseModel,
    dataset_id: int | None,
    model_name: str,
    total: int,
) -> Job:
    """Record a queued job of any kind, keeping ``spec`` (its kind's ``stored_model``) as
    JSON; it is sent to the broker after the commit. A broker that does not answer is
    Unavailable (503) here, before anything is recorded."""
    context.queue.check_reachable()
    now = utcnow()
    job = JobRepository(context.session).add(
        Job(
            kind=kind,
            status=JobStatus.QUEUED,
            dataset_id=dataset_id,
            model_name=model_name,
            spec=spec.model_dump(mode="json"),
            max_attempts=context.settings.job_max_attempts,
            progress_total=total,
            attempt=0,
            progress_done=0,
            sends=1,
            enqueued_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    defer_until_commit(context.session, functools.partial(context.queue.send, job.id, job.kind))
    return job


def _most_specific_first(models: list[type[StoredResult]]) -> list[type[StoredResult]]:
    """``models`` with every model ahead of the models it extends (a retrain's result is a
    search's and more), otherwise in their order: a union of them then validates and
    serializes each result as its own model, not as a model it extends."""
    ordered: list[type[StoredResult]] = []
    for model in models:
        base = next((i for i, seen in enumerate(ordered) if issubclass(model, seen)), None)
        ordered.insert(len(ordered) if base is None else base, model)
    return ordered


class KindMap(Mapping[str, JobKind[Any, Any]]):
    """The job kinds a server runs, by name; built once, by ``app.kinds``."""

    def __init__(self, kinds: list[JobKind[Any, Any]]) -> None:
        self._kinds: dict[str, JobKind[Any, Any]] = {}
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
        helpers = [task for kind in kinds for task in kind.helper_tasks]
        if len(set(helpers)) != len(helpers) or set(helpers) & {k.task_name for k in kinds}:
            raise BrokenInvariant(f"job kinds declare a task name twice: {sorted(helpers)}")

    def __getitem__(self, name: str) -> JobKind[Any, Any]:
        return self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def create_models(self) -> tuple[type[BaseModel], ...]:
        """What ``POST /v1/jobs`` takes, one model per kind (told apart by ``kind``)."""
        return tuple(kind.create_model for kind in self._kinds.values())

    def result_models(self) -> tuple[type[StoredResult], ...]:
        """Every kind's result model, each ahead of those it extends (see
        ``_most_specific_first``): the members of the API's result union."""
        models = [kind.result_model for kind in self._kinds.values()]
        return tuple(_most_specific_first(list(dict.fromkeys(models))))

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

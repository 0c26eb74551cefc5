"""Job rules: submit (commit, then enqueue), read, list, cancel."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.compression.spec import CompressionSpec, chain_problem, count_steps
from app.config import Settings
from app.contracts.enums import FINAL_JOB_STATES, JobStatus
from app.datasets.repository import DatasetRepository
from app.datasets.splits import TEST_FRACTION
from app.db import defer_until_commit, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.jobs.queue import JobQueue
from app.jobs.repository import JobRepository
from app.jobs.spec import CompressJobCreate, SearchJobCreate, SearchSpec
from app.registry.repository import ModelRepository
from app.registry.service import get_version
from app.search.plan import (
    SearchPlan,
    budget_of,
    make_plan,
    transfer_layers,
    with_budget_defaults,
)
from app.search.size import architecture_size, check_student, over_limits, smallest_in_space
from app.signature import VersionConfig
from app.tables import Dataset, Job, ModelVersion, Trial


def submit_job(session: Session, queue: JobQueue, settings: Settings,
               spec: SearchJobCreate | CompressJobCreate) -> Job:
    """Record a queued job; it is sent to the broker only after the transaction commits."""
    if isinstance(spec, CompressJobCreate):
        return _submit_compress(session, queue, settings, spec)
    dataset = DatasetRepository(session).get(spec.dataset_id)
    if dataset is None:
        raise InvalidInput(f"dataset_id: dataset {spec.dataset_id} not found")
    model = ModelRepository(session).get_by_name(spec.model_name)
    if model is not None and model.task != dataset.task:
        raise Conflict(f"model_name: model {spec.model_name!r} is a {model.task} model but "
                       f"dataset {dataset.id} is a {dataset.task} dataset")
    architecture = _check_search_sources(session, spec, dataset)
    test_rows = round(dataset.n_rows * TEST_FRACTION)
    # Given only timeout_s, the search runs until its time is spent: its trial count is
    # not known ahead (0), and progress is told in time.
    time_only = "timeout_s" in spec.search.model_fields_set and \
        "max_trials" not in spec.search.model_fields_set
    spec = spec.model_copy(update={"search": with_budget_defaults(
        spec.search, dataset.n_rows - test_rows, settings.embedded_workers)})
    plan = _plan(session, spec.search, dataset)
    _check_search_bounds(settings, spec.search, plan, dataset, architecture)
    if spec.compression is not None:
        _check_students(settings, spec.compression, dataset)
    return _enqueue(session, queue, settings, spec, dataset_id=dataset.id,
                    model_name=spec.model_name,
                    total=0 if time_only else budget_of(spec.search, plan))


def _enqueue(session: Session, queue: JobQueue, settings: Settings,
             spec: SearchJobCreate | CompressJobCreate, *, dataset_id: int, model_name: str,
             total: int) -> Job:
    return enqueue_job(session, queue, settings, kind=spec.kind,
                       spec=spec.model_dump(mode="json"), dataset_id=dataset_id,
                       model_name=model_name, total=total)


def enqueue_job(session: Session, queue: JobQueue, settings: Settings, *, kind: str,
                spec: dict[str, Any], dataset_id: int | None, model_name: str,
                total: int) -> Job:
    """Record a queued job of any kind; it is sent to the broker after the commit."""
    now = utcnow()
    job = JobRepository(session).add(Job(
        kind=kind, status=JobStatus.QUEUED, dataset_id=dataset_id,
        model_name=model_name, spec=spec, max_attempts=settings.job_max_attempts,
        trials_total=total, attempt=0, trials_done=0, sends=1, enqueued_at=now,
        created_at=now, updated_at=now))
    defer_until_commit(session, functools.partial(queue.send, job.id, job.kind))
    return job


def _submit_compress(session: Session, queue: JobQueue, settings: Settings,
                     spec: CompressJobCreate) -> Job:
    """A compression job: the source must exist, fit the dataset, and suit the chains."""
    try:
        source = get_version(session, spec.source.model, spec.source.version)
    except NotFound as missing:
        raise InvalidInput(f"source: {missing.message}") from None
    dataset_id = spec.dataset_id or source.dataset_id
    if dataset_id is None:
        raise InvalidInput(f"dataset_id: version {source.version} of {spec.source.model!r} "
                           "has no dataset of its own (it was uploaded); give dataset_id")
    dataset = DatasetRepository(session).get(dataset_id)
    if dataset is None:
        raise InvalidInput(f"dataset_id: dataset {dataset_id} not found")
    _check_fits(source, dataset, field="source")
    stored = source.config or VersionConfig()
    problem = chain_problem(spec.compression.methods, has_network=stored.has_network,
                            convolutional=stored.convolutional,
                            parent=f"version {source.version} of {spec.source.model!r}",
                            untrainable=stored.untrainable)
    if problem:
        raise InvalidInput(f"compression.{problem}")
    _check_students(settings, spec.compression, dataset)
    return _enqueue(session, queue, settings, spec, dataset_id=dataset.id,
                    model_name=spec.source.model, total=count_steps(spec.compression))


def _plan(session: Session, search: SearchSpec, dataset: Dataset) -> SearchPlan:
    """The search's plan; with ``init_from``, a fine-tune or a transfer to a new head."""
    source = (get_version(session, search.init_from.model, search.init_from.version)
              if search.init_from is not None else None)
    return make_plan(search, dataset, fixed_architecture=source is not None,
                     transfer_layers=transfer_layers(source, dataset) if source else None)


def _check_inputs(source: ModelVersion, dataset: Dataset, *, field: str) -> None:
    """A transfer keeps the body: the version must read the dataset's rows as they are."""
    encoding = (source.config or VersionConfig()).encoding
    if encoding is not None or dataset.encoding is not None:
        if encoding != dataset.encoding:
            raise InvalidInput(f"{field}: version {source.version} reads the columns of a "
                               f"table through its own preprocessing; dataset {dataset.id} "
                               "does not have those columns, so its body cannot be reused")
        return
    if tuple(source.signature.row_shape) != (len(dataset.feature_names),):
        raise InvalidInput(f"{field}: version {source.version}'s body expects rows of "
                           f"{list(source.signature.row_shape)} features; dataset "
                           f"{dataset.id} has {len(dataset.feature_names)} (a transfer keeps "
                           "the body, so the inputs must match)")


def _check_fits(source: ModelVersion, dataset: Dataset, *, field: str) -> None:
    """A version's signature must take the dataset's rows and give its task's outputs."""
    expected = (len(dataset.feature_names),
                len(dataset.class_labels) if dataset.class_labels else 1)
    signature = source.signature
    encoding = (source.config or VersionConfig()).encoding
    if encoding is not None or dataset.encoding is not None:
        if encoding != dataset.encoding or source.task != dataset.task:
            raise InvalidInput(f"{field}: version {source.version} reads the columns of a "
                               f"table through its own preprocessing; dataset {dataset.id} "
                               "is not that table (use the dataset it was trained on)")
        return
    if source.task != dataset.task or (signature.row_shape, signature.width) != (
            (expected[0],), expected[1]):
        raise InvalidInput(f"{field}: version {source.version} takes "
                           f"{list(signature.row_shape)} features and gives "
                           f"{signature.output.shape[1:]} outputs ({source.task}); dataset "
                           f"{dataset.id} has {expected[0]} features and {expected[1]} "
                           f"outputs ({dataset.task})")


def _outputs(dataset: Dataset) -> int:
    return len(dataset.class_labels) if dataset.class_labels else 1


def _check_search_bounds(settings: Settings, search: SearchSpec, plan: SearchPlan,
                         dataset: Dataset, architecture: dict[str, Any] | None) -> None:
    """The server's ceilings: parallelism, time, parameters and training memory."""
    ceilings = [("search.parallelism", search.parallelism, settings.max_parallelism,
                 "KILN_MAX_PARALLELISM"),
                ("search.data_parallel", search.data_parallel, settings.max_data_parallel,
                 "KILN_MAX_DATA_PARALLEL"),
                ("search.timeout_s", search.timeout_s, settings.max_job_s, "KILN_MAX_JOB_S"),
                ("search.trial_timeout_s", search.trial_timeout_s, settings.max_trial_s,
                 "KILN_MAX_TRIAL_S"),
                ("search.constraints.max_params", search.constraints.max_params,
                 settings.params_ceiling, "KILN_MAX_PARAMS")]
    for path, asked, ceiling, variable in ceilings:
        if asked is not None and asked > ceiling:
            raise InvalidInput(f"{path}: {_plain(asked)} is over this server's limit of "
                               f"{_plain(ceiling)} ({variable})")
    if architecture is not None:
        batch = int(min(plan.space.dimensions["batch_size"].choices))
        problem = over_limits(architecture_size(architecture), batch, settings)
        if problem:
            raise InvalidInput(f"search.init_from: that network needs {problem}")
        return
    smallest, batch = smallest_in_space(plan.space, n_inputs=len(dataset.feature_names),
                                        n_outputs=_outputs(dataset),
                                        input_shape=dataset.input_shape)
    problem = over_limits(smallest, batch, settings)
    if problem:
        raise InvalidInput(f"search.space: the smallest network this space allows needs "
                           f"{problem}")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _check_students(settings: Settings, compression: CompressionSpec, dataset: Dataset) -> None:
    """Distillation students given by size must fit the server's ceilings."""
    for position, chain in enumerate(compression.methods):
        for index, step in enumerate(chain):
            hidden = getattr(step, "student_hidden", None)
            if hidden:
                check_student(hidden, n_inputs=len(dataset.feature_names),
                              n_outputs=_outputs(dataset), settings=settings,
                              path=f"compression.methods[{position}][{index}].student_hidden")


def _check_search_sources(session: Session, spec: SearchJobCreate,
                          dataset: Dataset) -> dict[str, Any] | None:
    """``warm_start_job`` and ``init_from`` must exist and fit the dataset; returns the
    architecture ``init_from`` fixes."""
    search = spec.search
    if search.warm_start_job is not None:
        earlier = JobRepository(session).get(search.warm_start_job)
        if earlier is None or earlier.kind != "search":
            raise InvalidInput(f"search.warm_start_job: search job {search.warm_start_job} "
                               "not found")
    if search.init_from is None:
        return None
    source = get_version(session, search.init_from.model, search.init_from.version)
    stored = source.config or VersionConfig()
    if not stored.has_network or stored.architecture is None:
        why = stored.untrainable or "it was uploaded as ONNX, or averages several networks"
        raise InvalidInput(f"search.init_from: version {source.version} of "
                           f"{search.init_from.model!r} has no torch weights ({why}); "
                           "fine-tuning and transfer need one network")
    if stored.columns is not None:
        raise InvalidInput(f"search.init_from: version {source.version} of "
                           f"{search.init_from.model!r} reads selected columns only; "
                           "fine-tuning needs a network that reads every column")
    if transfer_layers(source, dataset) is None:
        _check_fits(source, dataset, field="search.init_from")
    else:  # other outputs: the body is reused and a new head is learnt
        _check_inputs(source, dataset, field="search.init_from")
    return stored.architecture


def get_job(session: Session, job_id: int) -> Job:
    """The job, or NotFound."""
    return JobRepository(session).get_or_raise(job_id)


def list_jobs(session: Session, *, limit: int, offset: int,
              status: JobStatus | None = None) -> tuple[list[Job], int]:
    """A page of jobs, newest first, with the total count."""
    return JobRepository(session).newest_first(limit=limit, offset=offset, status=status)


def list_trials(session: Session, job_id: int) -> list[Trial]:
    """The trials of a job in order."""
    get_job(session, job_id)
    return JobRepository(session).trials(job_id)


def cancel_job(session: Session, job_id: int) -> Job:
    """Cancel a queued or running job; its worker stops at the next lease renewal.
    Idempotent: cancelling a cancelled job answers with it again; a job that succeeded or
    failed (before or while this ran) is a Conflict that says so."""
    job = get_job(session, job_id)
    if job.status in FINAL_JOB_STATES and job.status != JobStatus.CANCELLED:
        raise Conflict(f"job {job_id} already {job.status}; only a queued or running job "
                       "can be cancelled")
    now = utcnow()
    session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .values(status=JobStatus.CANCELLED, finished_at=now, updated_at=now,
                lease_expires_at=None, error="cancelled by request")
        .execution_options(synchronize_session=False))
    session.refresh(job)
    if job.status != JobStatus.CANCELLED:
        raise Conflict(f"job {job_id} already {job.status}; only a queued or running job "
                       "can be cancelled")
    return job


def pareto_front(session: Session, job_id: int) -> dict[str, Any]:
    """The Pareto front a finished multi-objective search registered."""
    job = get_job(session, job_id)
    result = job.result or {}
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status}; the front is known when it succeeds")
    if "pareto" not in result:
        raise Conflict(f"job {job_id} optimised one objective; see its result for the best "
                       "trial")
    objectives = result["plan"]["objectives"]
    names = [objective["metric"] for objective in objectives]
    trials = {trial.number: trial for trial in JobRepository(session).trials(job_id)}
    front = []
    for entry, version in zip(result["pareto"], result["versions"], strict=True):
        trial = trials.get(entry["trial"])
        front.append({"trial": entry["trial"], "version": version,
                      "values": dict(zip(names, entry["values"], strict=True)),
                      "params": trial.params if trial else {}})
    return {"objectives": objectives, "trials": front}


def compression_report(session: Session, job_id: int) -> dict[str, Any]:
    """The comparison table a finished compression stored in its job's result."""
    job = get_job(session, job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status}; its report exists when it succeeds")
    report = (job.result or {}).get("compression")
    if report is None:
        raise Conflict(f"job {job_id} did not compress anything; submit a compress job or a "
                       "search with 'compression'")
    return {"job_id": job_id, **report}


def objectives_of(session: Session, job: Job) -> list[dict[str, str]]:
    """A search job's objectives (metric and direction), from its result once it has one,
    else from its spec and dataset as the search itself plans them; [] for other kinds."""
    plan = (job.result or {}).get("plan")
    if plan and plan.get("objectives"):
        return list(plan["objectives"])
    dataset = DatasetRepository(session).get(job.dataset_id) if job.dataset_id else None
    if job.kind != "search" or dataset is None or "search" not in job.spec:
        return []
    planned = _plan(session, SearchSpec.model_validate(job.spec["search"]), dataset)
    return [{"metric": o.metric, "direction": o.direction} for o in planned.objectives]

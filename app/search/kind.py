"""The ``search`` job kind: checked and queued here (no torch: the gateway imports this);
run on a worker by ``app.search.study.run_search``, with the helper tasks it declares (more
trial runners, data-parallel members); its Pareto route is ``app.search.routes``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from app.compression.kind import check_students
from app.contracts.enums import JobStatus
from app.contracts.networks import CNNConfig, MLPConfig
from app.contracts.results import Objective, SearchResult, StoredResult, result_as
from app.contracts.signature import VersionConfig
from app.core.config import Settings
from app.core.db import Session
from app.core.errors import Conflict, InvalidInput, KilnError
from app.datasets.repository import DatasetRepository
from app.datasets.splits import TEST_FRACTION
from app.jobs.kinds import JobKind, SubmitContext, enqueue
from app.jobs.repository import JobRepository
from app.jobs.trial_repository import TrialRepository
from app.registry.fits import check_fits, check_inputs, outputs_of
from app.registry.repository import ModelRepository
from app.registry.service import get_version, sandbox_reason
from app.search.plan import (
    SearchPlan,
    budget_of,
    make_plan,
    transfer_layers,
    with_budget_defaults,
)
from app.search.size import lowest_batch, space_too_big
from app.search.spec import SEARCH_KIND, SearchJobCreate, SearchSpec
from app.tables import Dataset, Job
from app.training.size import architecture_size, over_limits

if TYPE_CHECKING:
    from fastapi import APIRouter

    from app.jobs.http import JobHttp

SEARCH_HELPER_TASK = "kiln.search_helper"  # (job id, slot): more trials of a running job
TRAIN_MEMBER_TASK = "kiln.train_member"  # (message): a share of a data-parallel trial
SEARCH_SECTIONS = ("trials", "pareto", "compression")  # its dashboard page


def work_key(job_id: int, trial: int) -> str:
    """Where a data-parallel trial's rank 0 leaves the work its members load."""
    return f"jobs/{job_id}/data-parallel/trial-{trial}.npz"


class RunsSearch(BaseModel):
    """The stored spec of a kind that runs a search for its own ends (``retrain``): the
    search, checked as a search job's is, under ``search_job``. Such a kind's stored model
    extends this one; the search's worker code and pages read the search there."""

    search_job: SearchJobCreate


def search_of(job: Job) -> SearchJobCreate | None:
    """The search a stored job runs: a search job's own spec, or the one a kind that runs
    a search keeps (``RunsSearch``); None for a job that runs none (or that another
    release stored in a shape this one cannot read)."""
    if job.kind == SEARCH_KIND:
        return SEARCH.spec_if_readable(job)
    try:
        return RunsSearch.model_validate(job.spec).search_job
    except ValidationError:
        return None


def search_scratch_keys(session: Session, job: Job, search: SearchJobCreate | None) -> list[str]:
    """The work files of a job's data-parallel trials (rank 0 deletes each when the trial
    ends; a crash leaves it, holding training rows)."""
    if search is None or search.search.data_parallel <= 1:
        return []
    return [work_key(job.id, trial.number) for trial in TrialRepository(session).of_job(job.id)]


class SearchKind(JobKind[SearchJobCreate, SearchJobCreate]):
    """Find, train and register the best network (or ensemble) for a dataset."""

    name: ClassVar[str] = SEARCH_KIND
    create_model = SearchJobCreate
    stored_model = SearchJobCreate  # checked, with the budget's defaults chosen
    progress_unit: ClassVar[str] = "trials"
    result_model: ClassVar[type[StoredResult]] = SearchResult
    handler_path: ClassVar[str] = "app.search.study:run_search"
    helper_tasks: ClassVar[Mapping[str, str]] = {
        SEARCH_HELPER_TASK: "app.search.study:run_search_helper",
        TRAIN_MEMBER_TASK: "app.search.data_parallel:run_member",
    }
    page_sections: ClassVar[tuple[str, ...]] = SEARCH_SECTIONS

    def add_routes(self, router: APIRouter, http: JobHttp) -> None:
        from app.search.routes import search_routes  # the web framework: gateway only

        search_routes(router, http)

    def scratch_keys(self, session: Session, job: Job) -> list[str]:
        return search_scratch_keys(session, job, self.spec_if_readable(job))

    def submit(self, context: SubmitContext, spec: SearchJobCreate) -> Job:
        checked, dataset, total = self.prepare(context, spec)
        return enqueue(
            context,
            kind=self.name,
            spec=checked,
            dataset_id=dataset.id,
            model_name=checked.model_name,
            total=total,
        )

    def prepare(
        self, context: SubmitContext, spec: SearchJobCreate
    ) -> tuple[SearchJobCreate, Dataset, int]:
        """``spec`` checked (InvalidInput naming the field) with the budget's defaults
        chosen, its dataset, and its trial budget (0: told in time); what ``submit`` and
        the kinds that run a search record."""
        session, settings = context.session, context.settings
        dataset = DatasetRepository(session).for_job(spec.dataset_id)
        model = ModelRepository(session).get_by_name(spec.model_name)
        if model is not None and model.task != dataset.task:
            raise Conflict(
                f"model_name: model {spec.model_name!r} is a {model.task} model "
                f"but dataset {dataset.id} is a {dataset.task} dataset"
            )
        architecture = _check_sources(session, spec.search, dataset)
        test_rows = round(dataset.n_rows * TEST_FRACTION)
        # Given only timeout_s, the search runs until its time is spent: its trial count is
        # not known ahead (0), and progress is told in time.
        time_only = (
            "timeout_s" in spec.search.model_fields_set
            and "max_trials" not in spec.search.model_fields_set
        )
        spec = spec.model_copy(
            update={
                "search": with_budget_defaults(
                    spec.search,
                    dataset.n_rows - test_rows,
                    settings.embedded_workers,
                    input_shape=dataset.input_shape,
                    columns=len(dataset.encoding.columns)
                    if dataset.encoding is not None
                    else len(dataset.feature_names),
                )
            }
        )
        plan = _plan(session, spec.search, dataset)
        _check_bounds(settings, spec.search, plan, dataset, architecture)
        if spec.compression is not None:
            check_students(settings, spec.compression, dataset)
        return spec, dataset, 0 if time_only else budget_of(spec.search, plan)

    def time_budget_s(self, spec: SearchJobCreate) -> float | None:
        return spec.search.timeout_s

    def best_metric(self, session: Session, job: Job) -> str | None:
        return first_metric(session, job)


SEARCH = SearchKind()


def first_metric(session: Session, job: Job) -> str | None:
    """The metric of a job's ``best_value``: its search's first objective."""
    try:
        objectives = objectives_of(session, job)
    except KilnError:  # its dataset or source version is gone: the number stays unnamed
        return None
    return objectives[0].metric if objectives else None


def _plan(session: Session, search: SearchSpec, dataset: Dataset) -> SearchPlan:
    """The search's plan; with ``init_from``, a fine-tune or a transfer to a new head."""
    source = (
        get_version(session, search.init_from.model, search.init_from.version)
        if search.init_from is not None
        else None
    )
    return make_plan(
        search,
        dataset,
        fixed_architecture=source is not None,
        transfer_layers=transfer_layers(source, dataset) if source else None,
    )


def _check_bounds(
    settings: Settings,
    search: SearchSpec,
    plan: SearchPlan,
    dataset: Dataset,
    architecture: MLPConfig | CNNConfig | None,
) -> None:
    """The server's ceilings: parallelism, time, parameters and training memory."""
    ceilings = [
        (
            "search.parallelism",
            search.parallelism,
            settings.max_parallelism,
            "KILN_MAX_PARALLELISM",
        ),
        (
            "search.data_parallel",
            search.data_parallel,
            settings.max_data_parallel,
            "KILN_MAX_DATA_PARALLEL",
        ),
        ("search.timeout_s", search.timeout_s, settings.max_job_s, "KILN_MAX_JOB_S"),
        (
            "search.trial_timeout_s",
            search.trial_timeout_s,
            settings.max_trial_s,
            "KILN_MAX_TRIAL_S",
        ),
        (
            "search.constraints.max_params",
            search.constraints.max_params,
            settings.params_ceiling,
            "KILN_MAX_PARAMS",
        ),
    ]
    for path, asked, ceiling, variable in ceilings:
        if asked is not None and asked > ceiling:
            raise InvalidInput(
                f"{path}: {_plain(asked)} is over this server's limit of "
                f"{_plain(ceiling)} ({variable})"
            )
    if architecture is not None:
        batch = lowest_batch(plan.space)
        problem = over_limits(architecture_size(architecture), batch, settings)
        if problem:
            raise InvalidInput(f"search.init_from: that network needs {problem}")
        return
    if plan.space.network not in ("mlp", "cnn"):
        return  # no network in the space: trees and linear models are sized by their data
    problem = space_too_big(
        plan.space,
        settings,
        n_inputs=len(dataset.feature_names),
        n_outputs=outputs_of(dataset),
        input_shape=dataset.input_shape,
        encoding=dataset.encoding,
    )
    if problem:
        raise InvalidInput(f"search.space: the smallest network this space allows needs {problem}")


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _check_sources(
    session: Session, search: SearchSpec, dataset: Dataset
) -> MLPConfig | CNNConfig | None:
    """``warm_start_job`` and ``init_from`` must exist and fit the dataset; returns the
    architecture ``init_from`` fixes."""
    if search.warm_start_job is not None:
        earlier = JobRepository(session).get(search.warm_start_job)
        if earlier is None or earlier.kind != SEARCH_KIND:
            raise InvalidInput(
                f"search.warm_start_job: search job {search.warm_start_job} not found"
            )
    if search.init_from is None:
        return None
    source = get_version(session, search.init_from.model, search.init_from.version)
    sandboxed = sandbox_reason(session, source)
    if sandboxed is not None:
        raise InvalidInput(
            f"search.init_from: version {source.version} of {search.init_from.model!r} is "
            f"an uploaded graph that runs only in a sandbox ({sandboxed}); a worker may "
            "only read bounded graphs"
        )
    stored = source.config or VersionConfig()
    if not stored.has_network or stored.architecture is None:
        why = stored.untrainable or "it was uploaded as ONNX, or averages several networks"
        raise InvalidInput(
            f"search.init_from: version {source.version} of "
            f"{search.init_from.model!r} has no torch weights ({why}); "
            "fine-tuning and transfer need one network"
        )
    if stored.columns is not None:
        raise InvalidInput(
            f"search.init_from: version {source.version} of "
            f"{search.init_from.model!r} reads selected columns only; "
            "fine-tuning needs a network that reads every column"
        )
    if stored.fitted_on == "all_rows" and source.dataset_id == dataset.id:
        raise InvalidInput(
            f"search.init_from: version {source.version} of {search.init_from.model!r} was "
            f"fitted on every labelled row of dataset {dataset.id} (its search's refit "
            "'full'), test rows included, so a search from its weights on that dataset has "
            "no unseen rows to measure on; search from scratch, train on another dataset, or "
            "start from a version a search with refit 'selection_only' registered"
        )
    if transfer_layers(source, dataset) is None:
        check_fits(source, dataset, field="search.init_from")
    else:  # other outputs: the body is reused and a new head is learnt
        check_inputs(source, dataset, field="search.init_from")
    return stored.architecture


def objectives_of(session: Session, job: Job) -> list[Objective]:
    """A search's objectives (metric and direction), from its job's result once it has
    one, else from its spec and dataset as the search itself plans them; [] for a job
    that runs no search."""
    result = result_as(SearchResult, job.result)
    if result is not None and result.plan.objectives:
        return list(result.plan.objectives)
    dataset = DatasetRepository(session).get(job.dataset_id) if job.dataset_id else None
    search = search_of(job)
    if search is None or dataset is None:
        return []
    planned = _plan(session, search.search, dataset)
    return [Objective(metric=o.metric, direction=o.direction) for o in planned.objectives]


class ParetoTrial(BaseModel):
    """A trial on the Pareto front and the version it was registered as."""

    trial: int
    values: dict[str, float]
    params: dict[str, Any]
    version: int | None


class ParetoFront(BaseModel):
    objectives: list[dict[str, str]]
    trials: list[ParetoTrial]


def pareto_front(session: Session, job_id: int) -> ParetoFront:
    """The Pareto front a finished multi-objective search registered."""
    repository = JobRepository(session)
    job = repository.get_or_raise(job_id)
    if search_of(job) is None:
        raise Conflict(
            f"job {job_id} is a {job.kind} job; a Pareto front belongs to a search with "
            "several objectives"
        )
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict(f"job {job_id} is {job.status}; the front is known when it succeeds")
    result = result_as(SearchResult, job.result)
    if result is None or result.pareto is None:
        raise Conflict(f"job {job_id} optimised one objective; see its result for the best trial")
    names = [objective.metric for objective in result.plan.objectives]
    trials = {trial.number: trial for trial in TrialRepository(repository.session).of_job(job_id)}
    front = []
    for point, version in zip(result.pareto, result.versions, strict=True):
        trial = trials.get(point.trial)
        front.append(
            ParetoTrial(
                trial=point.trial,
                version=version,
                values=dict(zip(names, point.values, strict=True)),
                params=trial.params if trial else {},
            )
        )
    return ParetoFront(
        objectives=[objective.stored_json() for objective in result.plan.objectives],
        trials=front,
    )

"""Running a search job. The worker that claims the job opens the shared Optuna study, sends
``parallelism - 1`` helper tasks, runs trials itself, waits for the helpers' last trials,
then registers the best trial (one objective) or every Pareto-front trial (several)."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

import optuna
from optuna.study import StudyDirection

from app.compression.job import stored_network
from app.contracts.enums import JobStatus, Task, TrialState
from app.contracts.results import LeftOut
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.core.errors import BrokenInvariant
from app.core.study_storage import open_storage
from app.datasets.repository import DatasetRepository
from app.datasets.service import load_arrays, load_raw
from app.datasets.splits import split_indices
from app.jobs.queue import JobQueue
from app.jobs.repository import JobRepository
from app.jobs.runner import (
    JobContext,
    JobLost,
    JobWatcher,
    Recorder,
    hard_deadline,
    worker_name,
)
from app.jobs.trial_repository import TrialRepository
from app.registry.service import get_version
from app.search.budget import REFRESH_S as RESERVE_REFRESH_S
from app.search.budget import Phases
from app.search.families import seed_families
from app.search.finalize import (
    SearchSubject,
)
from app.search.finish import FinishReserve, finalize
from app.search.kind import SEARCH, SEARCH_HELPER_TASK, search_of
from app.search.left_out import left_out_families
from app.search.plan import (
    make_plan,
    transfer_layers,
    uses_folds,
)
from app.search.run import SearchRun
from app.search.schedule_study import table_size
from app.search.selection import fold_data
from app.search.space import fits
from app.search.spec import SEARCH_KIND, SearchJobCreate, SearchSpec
from app.search.strategy import make_pruner, make_sampler
from app.search.trials import run_trials, stale_trial_handler, wait_for_others
from app.storage import get_store
from app.tables import Job
from app.training.device import resolve_device
from app.training.stopping import stop_checks
from app.training.train import TrainData, save_weights

logger = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)

WARM_START_TRIALS = 5
TRIALS_SHARE_OF_JOB = 0.9
RAW_SAMPLE_ROWS = 64  # raw validation rows that trials time the served file on
HELPER_SEED_STRIDE = 104_729
WAIT_CHARGED_SHARE = 0.03  # of timeout_s: the wait for a worker the budget counts
ATTEMPT_SEED_STRIDE = 7_919


def study_name(job_id: int) -> str:
    return f"kiln-job-{job_id}"


def _open(
    settings: Settings,
    job_id: int,
    spec: SearchSpec,
    *,
    seed: int,
    worker: str,
    compresses: bool = False,
) -> SearchRun:
    """Everything a worker needs for this job's trials (``spec``: the search it runs), from
    the registry and the study."""
    with session_scope(settings.database_url) as session:
        job = JobRepository(session).get_or_raise(job_id)
        if job.dataset_id is None:
            raise BrokenInvariant("job.dataset_id is None")
        dataset = DatasetRepository(session).get(job.dataset_id)
        if dataset is None:
            raise BrokenInvariant("dataset is None")
        architecture, init_weights, transfer = None, None, None
        if spec.init_from is not None:
            source = get_version(session, spec.init_from.model, spec.init_from.version)
            stored = source.config
            # checked at submit
            if stored is None:
                raise BrokenInvariant("stored is None")
            if stored.architecture is None:
                raise BrokenInvariant("stored.architecture is None")
            architecture = stored.architecture
            network = stored_network(source, get_store(settings))
            # has_network was checked at submit
            if network is None:
                raise BrokenInvariant("network is None")
            init_weights = save_weights(network)
            transfer = transfer_layers(source, dataset)
        started_at = budget_start(job, spec)
        session.expunge(dataset)
    store = get_store(settings)
    plan = make_plan(
        spec, dataset, fixed_architecture=architecture is not None, transfer_layers=transfer
    )
    arrays = load_arrays(store, dataset)
    splits = split_indices(
        arrays.target, Task(dataset.task), seed=spec.seed, features=arrays.features
    )
    data = TrainData(
        x_train=arrays.features[splits.train],
        y_train=arrays.target[splits.train],
        x_val=arrays.features[splits.validation],
        y_val=arrays.target[splits.validation],
    )
    folds = (
        fold_data(arrays.features, arrays.target, Task(dataset.task), splits, spec.seed)
        if uses_folds(spec.validation, len(splits.train) + len(splits.validation))
        else None
    )
    storage = open_storage(
        settings, on_stale=stale_trial_handler(settings, job_id, spec.max_retries)
    )
    sampler = make_sampler(
        spec.algorithm,
        seed=seed,
        space=plan.space,
        max_trials=spec.max_trials,
        parallel=spec.parallelism > 1,
    )
    pruner = make_pruner(spec.pruner, max_epochs=spec.max_epochs)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name(job_id),
        sampler=sampler,
        load_if_exists=True,
        pruner=pruner if not plan.multi_objective else optuna.pruners.NopPruner(),
        directions=[
            StudyDirection.MAXIMIZE if objective.maximize else StudyDirection.MINIMIZE
            for objective in plan.objectives
        ],
    )
    pruning = None
    if plan.multi_objective and spec.pruner != "none":
        # Optuna's pruners take one objective: a twin study sees the pruning metric only.
        pruning = optuna.create_study(
            storage=storage,
            study_name=f"{study_name(job_id)}-pruning",
            pruner=pruner,
            load_if_exists=True,
            direction="maximize" if plan.objectives[0].maximize else "minimize",
        )
    run = SearchRun(
        settings=settings,
        job_id=job_id,
        spec=spec,
        plan=plan,
        dataset=dataset,
        arrays=arrays,
        splits=splits,
        data=data,
        store=store,
        worker=worker,
        storage=storage,
        study=study,
        pruning=pruning,
        architecture=architecture,
        init_weights=init_weights,
        budget_end=started_at + timedelta(seconds=search_seconds(spec, settings)),
        raw_sample=(
            load_raw(store, dataset, splits.validation[:RAW_SAMPLE_ROWS])
            if dataset.encoding is not None
            else None
        ),
        folds=folds,
        device=str(resolve_device(settings.device)),
        trial_limit_s=min(spec.trial_timeout_s or math.inf, settings.max_trial_s),
        started_at=started_at,
    )
    if spec.timeout_s is not None:  # the budget is the job's wall time: plan the finish in it
        run.finish_reserve = FinishReserve(run, compresses, refresh_s=RESERVE_REFRESH_S)
    return run


def budget_start(job: Job, spec: SearchSpec) -> datetime:
    """When a search's time starts: its claim by a worker, less the wait for that worker
    up to ``WAIT_CHARGED_SHARE`` of ``timeout_s`` (a user's budget runs from the submit;
    a long queue behind other jobs is not charged to it)."""
    started = job.started_at or utcnow()
    if spec.timeout_s is None:
        return started
    waited = max(0.0, (started - job.created_at).total_seconds())
    return started - timedelta(seconds=min(waited, WAIT_CHARGED_SHARE * spec.timeout_s))


def search_seconds(spec: SearchSpec, settings: Settings) -> float:
    """How long trials may run from the job's start: ``timeout_s``, else a share of the
    hard limit that leaves the rest to register (and compress) the winner."""
    if spec.timeout_s is not None:
        return min(spec.timeout_s, settings.max_job_s)
    return settings.max_job_s * TRIALS_SHARE_OF_JOB


def _warm_start(run: SearchRun) -> None:
    """Queue the best configurations of ``warm_start_job`` (once per study)."""
    if run.spec.warm_start_job is None or run.study.user_attrs.get("warm_started"):
        return
    with session_scope(run.settings.database_url) as session:
        earlier = TrialRepository(session).of_job(
            run.spec.warm_start_job, state=TrialState.COMPLETE
        )
    objective = run.plan.objectives[0]
    valued = [(t.value, t) for t in earlier if t.value is not None]
    valued.sort(key=lambda pair: -pair[0] if objective.maximize else pair[0])
    ranked = [trial for _, trial in valued]
    queued = 0
    for trial in ranked:
        if queued == WARM_START_TRIALS:
            break
        if fits(run.plan.space, trial.params):
            run.study.enqueue_trial(trial.params, skip_if_exists=True)
            queued += 1
    run.study.set_user_attr("warm_started", queued)


def run_search(context: JobContext) -> Recorder:
    """A search job's handler: the search its spec stores (``run_stored_search``)."""
    with session_scope(context.settings.database_url) as session:
        spec = SEARCH.read_spec(JobRepository(session).get_or_raise(context.job_id))
    return run_stored_search(context, spec)


def run_stored_search(context: JobContext, spec: SearchJobCreate) -> Recorder:
    """The job's main worker for the search ``spec`` (a search job's own, or the one a kind
    that runs a search stores): trials, helpers, waiting, then the registered version(s)."""
    seed_base = ATTEMPT_SEED_STRIDE * (context.attempt - 1)
    queue = JobQueue(context.settings)  # helpers start while this worker sets up
    for slot in range(1, spec.search.parallelism):
        queue.send_helper(SEARCH_KIND, SEARCH_HELPER_TASK, context.job_id, slot)
        logger.info("sent helper %s of job %s", slot, context.job_id)
    run = _open(
        context.settings,
        context.job_id,
        spec.search,
        seed=spec.search.seed + seed_base,
        worker=context.worker,
        compresses=spec.compression is not None,
    )
    context.report(phase="trials")
    _warm_start(run)
    left_out = left_out_families(
        spec.search, [str(family) for family in run.plan.space.searched], table_size(run)
    )
    seed_families(run, left_out={note.family for note in left_out})
    subject = SearchSubject(
        job_id=context.job_id,
        model_name=spec.model_name,
        dataset=run.dataset,
        split_seed=spec.search.seed,
    )
    run_trials(run, context.check)
    wait_for_others(run, context.check)
    phases = Phases(tell=lambda name: context.report(phase=name))
    phases.add("trials", took_s=run.seconds_since_start(), planned_s=run.trials_seconds())
    plan = [LeftOut(family=note.family, reason=note.reason) for note in left_out]
    return finalize(context, run, subject, spec.compression, phases, left_out=plan)


def run_search_helper(settings: Settings, job_id: int, slot: int) -> None:
    """A helper worker: run trials of a running job until its budget is spent. It stops
    within about a second of a cancel, and at the job's hard deadline, like the main one."""
    with session_scope(settings.database_url) as session:
        job = JobRepository(session).get(job_id)
        if job is None or job.status != JobStatus.RUNNING:
            return
        search = search_of(job)
        if search is None:
            raise BrokenInvariant(f"job {job_id} ({job.kind}) runs no search for a helper")
        context = JobContext(
            job_id=job_id,
            attempt=job.attempt,
            settings=settings,
            worker=worker_name(),
            deadline=hard_deadline(settings, job.started_at),
        )
    watcher = JobWatcher(context, renews=False)
    watcher.start()
    try:
        run = _open(
            settings,
            job_id,
            search.search,
            worker=context.worker,
            compresses=search.compression is not None,
            seed=search.search.seed
            + ATTEMPT_SEED_STRIDE * (context.attempt - 1)
            + HELPER_SEED_STRIDE * slot,
        )
        with stop_checks(context.check_batch):
            run_trials(run, context.check)
    except JobLost as lost:
        logger.info("helper %s of job %s stops: %s", slot, job_id, lost)
    finally:
        watcher.finished.set()
        watcher.join(timeout=5)

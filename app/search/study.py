"""Running a search job: sample, train and record trials, keep the best, hand it on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import optuna
from sqlalchemy import select

from app.datasets.service import DatasetArrays, load_arrays
from app.datasets.splits import SplitIndices, split_indices
from app.db import session_scope, utcnow
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, JobFailed, JobLost, Recorder
from app.jobs.spec import JobCreate
from app.search.finalize import SearchSubject, finalize
from app.search.space import candidate, suggest
from app.storage import ArtifactStore, get_store
from app.tables import Dataset, Job, Task, Trial, TrialState
from app.training.models import Network
from app.training.train import TrainData, load_weights, save_weights, train

optuna.logging.set_verbosity(optuna.logging.WARNING)

COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED)


@dataclass(frozen=True)
class BestTrial:
    """The best completed trial so far."""

    number: int
    value: float
    params: dict[str, Any]


def checkpoint_key(job_id: int, number: int) -> str:
    return f"jobs/{job_id}/checkpoints/trial-{number}.pt"


def _load_subject(context: JobContext) -> SearchSubject:
    with session_scope(context.settings.database_url) as session:
        job = session.get(Job, context.job_id)
        assert job is not None and job.dataset_id is not None
        dataset = session.get(Dataset, job.dataset_id)
        assert dataset is not None
        spec = JobCreate.model_validate(job.spec)
        return SearchSubject(job_id=job.id, model_name=spec.model_name, spec=spec.search,
                             dataset=dataset, started_at=job.started_at or utcnow())


def _is_better(value: float, best: BestTrial | None, higher_is_better: bool) -> bool:
    if best is None:
        return True
    return value > best.value if higher_is_better else value < best.value


def _earlier_best(context: JobContext, higher_is_better: bool) -> tuple[BestTrial | None, int]:
    """Best completed trial of earlier attempts, and how many trials already count."""
    with session_scope(context.settings.database_url) as session:
        trials = JobRepository(session).trials(context.job_id)
    best: BestTrial | None = None
    for trial in trials:
        if trial.state == TrialState.COMPLETE and trial.value is not None and _is_better(
                trial.value, best, higher_is_better):
            best = BestTrial(number=trial.number, value=trial.value, params=trial.params)
    return best, sum(trial.state in COUNTED_STATES for trial in trials)


def _start_trial(context: JobContext, params: dict[str, Any]) -> int:
    with session_scope(context.settings.database_url) as session:
        repo = JobRepository(session)
        number = repo.next_trial_number(context.job_id)
        session.add(Trial(job_id=context.job_id, number=number, attempt=context.attempt,
                          state=TrialState.RUNNING, params=params, intermediate=[],
                          worker=context.worker, started_at=utcnow()))
    return number


def _end_trial(context: JobContext, number: int, state: TrialState, *, started: float,
               value: float | None = None, history: list[float] | None = None,
               error: str | None = None) -> None:
    with session_scope(context.settings.database_url) as session:
        trial = session.scalar(select(Trial).where(Trial.job_id == context.job_id,
                                                   Trial.number == number))
        assert trial is not None
        trial.state = state
        trial.value = value
        trial.intermediate = history or []
        trial.error = error
        trial.finished_at = utcnow()
        trial.duration_s = time.perf_counter() - started


def _train_data(arrays: DatasetArrays, splits: SplitIndices) -> TrainData:
    return TrainData(x_train=arrays.features[splits.train], y_train=arrays.target[splits.train],
                     x_val=arrays.features[splits.validation],
                     y_val=arrays.target[splits.validation])


def _n_outputs(dataset: Dataset) -> int:
    return len(dataset.class_labels) if dataset.class_labels else 1


def build_network(params: dict[str, Any], dataset: Dataset, seed: int) -> tuple[Network, Any]:
    """A fresh network and its training config for a trial's parameters."""
    point = candidate(params, n_inputs=len(dataset.feature_names),
                      n_outputs=_n_outputs(dataset), seed=seed)
    network = Network(point.network, classification=dataset.task == "classification", seed=seed)
    return network, point.training


def _restore_best(best: BestTrial, subject: SearchSubject, data: TrainData,
                  store: ArtifactStore) -> Network:
    """The best trial's trained network: from its checkpoint, or retrained if it is gone."""
    seed = subject.spec.seed + best.number
    network, training = build_network(best.params, subject.dataset, seed)
    key = checkpoint_key(subject.job_id, best.number)
    if store.exists(key):
        load_weights(network, store.local_path(key).read_bytes())
    else:
        train(network, data, training)
    network.eval()
    return network


def run_search(context: JobContext) -> Recorder:
    """Random search over the MLP space until the budget is spent, then finalize the best."""
    subject = _load_subject(context)
    store = get_store(context.settings.artifact_url)
    arrays = load_arrays(store, subject.dataset)
    splits = split_indices(arrays.target, Task(subject.dataset.task), seed=subject.spec.seed)
    data = _train_data(arrays, splits)
    higher_is_better = subject.dataset.task == "classification"
    best, done = _earlier_best(context, higher_is_better)
    sampler = optuna.samplers.RandomSampler(seed=subject.spec.seed + context.attempt - 1)
    study = optuna.create_study(direction="maximize" if higher_is_better else "minimize",
                                sampler=sampler)
    deadline = (subject.started_at + timedelta(seconds=subject.spec.timeout_s)
                if subject.spec.timeout_s else None)
    last_error = ""
    while done < subject.spec.max_trials and (deadline is None or utcnow() < deadline):
        context.check()
        trial = study.ask()
        params = suggest(trial, max_epochs=subject.spec.max_epochs)
        number = _start_trial(context, params)
        started = time.perf_counter()
        network, training = build_network(params, subject.dataset, subject.spec.seed + number)
        try:
            result = train(network, data, training, on_epoch=lambda _epoch, _score: context.check())
        except JobLost:
            raise
        except Exception as error:  # one bad configuration must not end the search
            last_error = f"{type(error).__name__}: {error}"
            _end_trial(context, number, TrialState.FAILED, started=started, error=last_error)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            done += 1
            context.report(trials_done=done)
            continue
        if _is_better(result.score, best, higher_is_better):
            store.put_bytes(checkpoint_key(subject.job_id, number), save_weights(network))
            best = BestTrial(number=number, value=result.score, params=params)
        _end_trial(context, number, TrialState.COMPLETE, started=started, value=result.score,
                   history=result.history)
        study.tell(trial, result.score)
        done += 1
        context.report(trials_done=done, best_value=best.value if best else None)
    if best is None:
        raise JobFailed("no trial completed" + (f"; last error: {last_error}" if last_error
                                                else " before timeout_s ran out"))
    network = _restore_best(best, subject, data, store)
    test_rows = arrays.features[splits.test]
    test_target = arrays.target[splits.test]
    return finalize(context, subject, network, best_trial=best.number, best_params=best.params,
                    test_rows=test_rows, test_target=test_target, store=store)

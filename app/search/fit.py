"""Training and measuring one configuration of a search: the network it describes, its
checks against the constraints, training on the holdout split or on every fold, and the
objective values (quality on validation rows; size and latency of the file as served)."""

from __future__ import annotations

import dataclasses
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import torch

from app.contracts.enums import Task
from app.contracts.params import ParamValue
from app.core.errors import BrokenInvariant
from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import Footprint, measure_file
from app.evaluation.latency import timed
from app.evaluation.metrics import quality_score
from app.evaluation.names import COST_METRICS
from app.preprocessing.graph import with_rows
from app.search.build import candidate, front_for
from app.search.data_parallel import train_in_group
from app.search.run import Infeasible, SearchRun, checkpoint_key, predictions_key
from app.search.selection import Folds, proper_score
from app.search.space import TransferParams
from app.search.spec import ConstraintSpec
from app.search.trial_metrics import ServedCosts, TrialMetrics
from app.training.export import INPUT_NAME, export_onnx
from app.training.families.networks import TrainingParams
from app.training.models import Network, count_parameters, transfer_groups
from app.training.size import over_limits, size_of
from app.training.train import TrainConfig, TrainData, load_weights, save_weights, train

FP32_BYTES = 4
WEIGHTS_SUFFIX = "pt"  # a network trial's checkpoint: its torch weights


def build_network(
    run: SearchRun, params: dict[str, ParamValue], seed: int
) -> tuple[Network, TrainConfig]:
    """A fresh (or ``init_from``-initialised) network and its training configuration."""
    n_outputs = len(run.dataset.class_labels) if run.dataset.class_labels else 1
    point = candidate(
        params,
        n_inputs=len(run.dataset.feature_names),
        n_outputs=n_outputs,
        input_shape=run.dataset.input_shape,
        seed=seed,
        metric=run.plan.pruning_metric,
        architecture=run.architecture,
        encoding=run.dataset.encoding,
    )
    network = Network(
        point.network, classification=run.dataset.task == Task.CLASSIFICATION, seed=seed
    )
    training = dataclasses.replace(point.training, device=run.device)
    if run.init_weights is not None and run.transfers:
        transfer = TransferParams.from_values(params)
        frozen, slow, head = transfer_groups(network, transfer.frozen_layers)
        load_weights(network, run.init_weights, except_prefixes=head)
        training = dataclasses.replace(
            training,
            frozen=frozen,
            slow=slow,
            head=head,
            slow_lr_factor=transfer.body_lr_factor,
            head_warmup_epochs=transfer.head_warmup_epochs,
            keep_input_scaling=True,
        )
    elif run.init_weights is not None:
        load_weights(network, run.init_weights)
    return network, training


def _check_estimate(run: SearchRun, params: dict[str, ParamValue]) -> None:
    """Refuse a sampled network that is too big for this server before it is built."""
    if run.architecture is not None:
        return  # init_from: its size was checked when the job was submitted
    n_outputs = len(run.dataset.class_labels) if run.dataset.class_labels else 1
    size = size_of(
        params,
        n_inputs=len(run.dataset.feature_names),
        n_outputs=n_outputs,
        input_shape=run.dataset.input_shape,
        front=front_for(params, run.dataset.encoding),
    )
    problem = over_limits(size, TrainingParams.from_values(params).batch_size, run.settings)
    limit = run.plan.constraints.max_params
    if problem is None and limit is not None and size.params > limit:
        problem = f"{size.params} parameters > max_params {limit}"
    if problem:
        raise Infeasible(f"estimated before building: {problem}")


def _check_architecture(run: SearchRun, network: Network) -> None:
    limits = run.plan.constraints
    params = count_parameters(network)
    if limits.max_params is not None and params > limits.max_params:
        raise Infeasible(f"{params} parameters > max_params {limits.max_params}")
    if limits.max_size_bytes is not None and params * FP32_BYTES > limits.max_size_bytes:
        raise Infeasible(
            f"at least {params * FP32_BYTES} bytes of fp32 weights > "
            f"max_size_bytes {limits.max_size_bytes}"
        )


def quality_of(run: SearchRun, output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The quality objectives and the tie-breaking proper score on validation rows."""
    task = run.dataset.task
    names = {
        objective.metric
        for objective in run.plan.objectives
        if objective.metric not in COST_METRICS
    }
    names.add(proper_score(task))
    return {name: quality_score(name, task, output, target) for name in sorted(names)}


def served_costs(
    run: SearchRun, params: int, n_inputs: int, write_onnx: Callable[[Path], None]
) -> ServedCosts:
    """Parameters, and (when an objective or constraint needs them) the size and latency
    of the file ``write_onnx`` writes, as served, and its memory and energy (in a child
    process: only when asked for); checked against the constraints."""
    if not run.plan.needs_export:
        return ServedCosts(params=float(params))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trial.onnx"
        write_onnx(path)
        feeds = None
        if run.dataset.encoding is not None and run.raw_sample is not None:
            served, feeds = with_rows(
                path.read_bytes(), run.dataset.encoding, run.raw_sample
            )  # as it would serve
            path.write_bytes(served)
        size_bytes = float(path.stat().st_size)
        latency = timed(
            path,
            input_name=INPUT_NAME,
            row_shape=(n_inputs,),
            threads=run.settings.ort_threads,
            feeds=feeds,
        )
        footprint = None
        if run.plan.needs_footprint:
            footprint = measure_file(
                path,
                feeds or {INPUT_NAME: random_rows(n_inputs)},
                threads=run.settings.ort_threads,
                energy=EnergySettings.of(run.settings),
            )
    limits = run.plan.constraints
    if footprint is not None:
        check_footprint(limits, footprint)
    if limits.max_size_bytes is not None and size_bytes > limits.max_size_bytes:
        raise Infeasible(
            f"ONNX file of {size_bytes:.0f} bytes > max_size_bytes {limits.max_size_bytes}"
        )
    if limits.max_latency_ms is not None and latency.p50 > limits.max_latency_ms:
        raise Infeasible(
            f"p50 latency {latency.p50:.4f} ms > max_latency_ms {limits.max_latency_ms}"
        )
    return ServedCosts(
        params=float(params), size_bytes=size_bytes, latency_ms=latency.p50, footprint=footprint
    )


def random_rows(n_inputs: int) -> np.ndarray:
    """Rows of the kind latency is timed on for a file that takes features."""
    return np.random.default_rng(0).standard_normal((4, n_inputs)).astype(np.float32)


def check_footprint(limits: ConstraintSpec, footprint: Footprint) -> None:
    """Infeasible when the trial's memory or energy passes its limit (unmeasured memory
    passes none: it is None only where the process's sizes cannot be read)."""
    memory, energy = footprint.peak_memory_mb, footprint.energy_mj_per_1k_rows
    memory_limit = limits.max_peak_memory_mb
    if memory_limit is not None and memory is not None and memory > memory_limit:
        raise Infeasible(f"peak memory {memory:.4f} MB a run > max_peak_memory_mb {memory_limit}")
    if limits.max_energy_mj_per_1k_rows is not None and energy > limits.max_energy_mj_per_1k_rows:
        raise Infeasible(
            f"{energy:.4g} mJ per 1,000 rows ({footprint.energy_source}) > "
            f"max_energy_mj_per_1k_rows {limits.max_energy_mj_per_1k_rows}"
        )


def _validation_output(network: Network, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return network.predict(torch.from_numpy(rows)).numpy()


@dataclasses.dataclass(frozen=True)
class Measured:
    """A trained trial's validation metrics, and the digests of its stored weights and
    held-out predictions (None when the search keeps none)."""

    metrics: TrialMetrics
    checkpoint_sha256: str
    predictions_sha256: str | None


@dataclasses.dataclass(frozen=True)
class FittedTrial:
    """What storing a fitted trial needs, whatever its family: its learnt numbers, its
    inputs, how to write its ONNX file, and its state in its own format."""

    params: int
    n_inputs: int
    write_onnx: Callable[[Path], None]
    state: Callable[[], bytes]
    state_suffix: str


def store_trial(
    run: SearchRun,
    number: int,
    measured: TrialMetrics,
    held_out: np.ndarray,
    fitted: FittedTrial,
) -> Measured:
    """The one way a trial's result is kept, network or table family: its costs as served
    (checked against the constraints) added to ``measured``, its state stored as the
    trial's checkpoint, and its held-out predictions when the search keeps them (and how
    long that took: the rest of a trial's time is its fits, what a refit repeats)."""
    started = time.perf_counter()
    costs = served_costs(run, fitted.params, fitted.n_inputs, fitted.write_onnx)
    checkpoint = run.store.put_bytes(
        checkpoint_key(run.job_id, number, fitted.state_suffix), fitted.state()
    )
    predictions_sha256 = None
    if run.keeps_predictions:
        buffer = io.BytesIO()
        np.save(buffer, held_out.astype(np.float32))
        predictions_sha256 = run.store.put_bytes(
            predictions_key(run.job_id, number), buffer.getvalue()
        ).sha256
    stored_s = round(time.perf_counter() - started, 4)
    return Measured(
        metrics=measured.served(costs).model_copy(update={"store_s": stored_s}),
        checkpoint_sha256=checkpoint.sha256,
        predictions_sha256=predictions_sha256,
    )


def training_data(run: SearchRun, rows: np.ndarray | None) -> TrainData:
    """The holdout pair a trial fits on: ``rows`` (positions among the training rows: a
    large table's subsample) of the training split, or all of it, and every validation
    row either way, so that scores compare."""
    if rows is None:
        return run.data
    return dataclasses.replace(
        run.data, x_train=run.data.x_train[rows], y_train=run.data.y_train[rows]
    )


def train_trial(
    run: SearchRun,
    trial: optuna.Trial,
    shadow: optuna.Trial | None,
    params: dict[str, ParamValue],
    keep_going: Callable[[], None],
    history: list[float],
    rows: np.ndarray | None = None,
) -> Measured:
    """Train one configuration (on the holdout split, or on every fold) and measure it;
    its weights are stored as the trial's checkpoint. ``rows``: the training rows it fits
    on (``training_data``; holdout only)."""
    _check_estimate(run, params)
    seed = run.spec.seed + trial.number
    network, training = build_network(run, params, seed=seed)
    _check_architecture(run, network)
    # Several objectives: Optuna takes reports only in the single-objective twin study.
    # Without a pruner nobody reads them, so they are not written (the row keeps them).
    reporter = shadow if run.plan.multi_objective else trial
    if run.spec.pruner == "none":
        reporter = None

    def on_epoch(epoch: int, score: float) -> None:
        history.append(score)
        keep_going()
        if reporter is None:
            return
        reporter.report(score, epoch)
        if reporter.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} ({score:.4f})")

    if run.folds is None:
        data = training_data(run, rows)
        if run.spec.data_parallel > 1:  # every member reads all rows: never a subsample
            result, processes = train_in_group(run, trial.number, network, training, on_epoch)
        else:
            result, processes = train(network, data, training, on_epoch=on_epoch), 1
        held_out = _validation_output(network, data.x_val)
        # On a subsample the epochs to the best are epochs over fewer rows: a refit on every
        # row reaches as many optimizer steps in proportionally fewer epochs (rows / the
        # subsample's). ``refit_epochs`` stays as found; ``train_rows`` says on what.
        measured = (
            TrialMetrics.trained(
                quality_of(run, held_out, data.y_val), refit_epochs=result.best_epoch + 1
            )
            .in_processes(processes)
            .on_rows(len(data.y_train))
        )
    else:
        measured, held_out = _train_folds(
            run, run.folds, params, seed, network, training, on_epoch, keep_going
        )
    fitted = FittedTrial(
        params=count_parameters(network),
        n_inputs=network.config.n_inputs,
        write_onnx=lambda path: export_onnx(network, path),
        state=lambda: save_weights(network),
        state_suffix=WEIGHTS_SUFFIX,
    )
    return store_trial(run, trial.number, measured, held_out, fitted)


def _train_folds(
    run: SearchRun,
    folds: Folds,
    params: dict[str, ParamValue],
    seed: int,
    first: Network,
    training: TrainConfig,
    on_epoch: Callable[[int, float], None],
    keep_going: Callable[[], None],
) -> tuple[TrialMetrics, np.ndarray]:
    """Cross-validation: the same configuration trained on each fold from the same seed.
    Pruners see the first fold's epochs; the trial's values are the folds' means. Also
    the out-of-fold predictions of every non-test row."""
    per_fold, best_epochs = [], []
    out_of_fold: np.ndarray | None = None
    for index, fold in enumerate(folds.data):
        network = first if index == 0 else build_network(run, params, seed=seed)[0]
        result = train(
            network, fold, training, on_epoch=on_epoch if index == 0 else lambda *_: keep_going()
        )
        output = _validation_output(network, fold.x_val)
        if out_of_fold is None:
            out_of_fold = np.empty((len(folds.rows), *output.shape[1:]), dtype=np.float32)
        out_of_fold[folds.positions[index]] = output
        per_fold.append(quality_of(run, output, fold.y_val))
        best_epochs.append(result.best_epoch)
    primary = run.plan.objectives[0].metric
    if primary not in per_fold[0]:
        primary = proper_score(run.dataset.task)
    if out_of_fold is None:
        raise BrokenInvariant("out_of_fold is None")
    summary = TrialMetrics.folds_mean(per_fold, best_epochs, primary)
    return summary.on_rows(len(folds.data[0].y_train)), out_of_fold

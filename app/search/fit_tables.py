"""Trials of the table families (``gbdt``, ``linear``, ...): fitted on the same encoded features,
scored on the same evidence (the validation split, or every fold) and measured as served,
like a network's trial. A GBDT stops boosting when the watched rows stop improving; a refit
on every non-test row boosts for the rounds the validation found (the folds' mean)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import optuna

from app.contracts.params import ParamValue
from app.search.fit import FittedTrial, Measured, quality_of, store_trial, training_data
from app.search.run import SearchRun
from app.search.selection import proper_score
from app.search.trial_metrics import TrialMetrics
from app.training.families.registry import Family, table_family
from app.training.stopping import check_stop
from app.training.table_models import FitOptions, TableData, TableModel
from app.training.train import TrainData


def _outputs(run: SearchRun) -> int:
    return len(run.dataset.class_labels) if run.dataset.class_labels else 1


def fit_family(
    run: SearchRun,
    family: Family,
    params: Mapping[str, Any],
    data: TrainData | TableData,
    *,
    seed: int,
    keep_going: Callable[[], None],
    rounds: int | None = None,
) -> TableModel:
    """``family`` fitted with a trial's stored parameters, typed at the family's door
    (watching ``data``'s validation rows unless ``rounds`` fixes the count)."""
    table = TableData(data.x_train, data.y_train, data.x_val, data.y_val)

    def check() -> None:  # a cancel, and the trial's and the search's time limits
        keep_going()
        check_stop()

    encoding = run.dataset.encoding
    options = FitOptions(
        seed=seed,
        threads=run.settings.train_threads,
        rounds=rounds,
        check=check,
        category_codes=encoding.category_codes() if encoding is not None else (),
    )
    fitter = table_family(family)
    return fitter.fit(fitter.params(params), table, _outputs(run), options)


def train_table_trial(
    run: SearchRun,
    trial: optuna.Trial,
    shadow: optuna.Trial | None,
    params: dict[str, ParamValue],
    keep_going: Callable[[], None],
    history: list[float],
    rows: np.ndarray | None = None,
) -> Measured:
    """Fit one configuration of a table family and measure it (the arguments are the
    network trial's: this family reports no epochs, so pruners never stop it; ``rows``:
    the training rows it fits on, holdout only)."""
    family = run.plan.space.family_of(params)
    seed = run.spec.seed + trial.number
    if run.folds is None:
        data = training_data(run, rows)
        model = fit_family(run, family, params, data, seed=seed, keep_going=keep_going)
        held_out = model.predict_rows(data.x_val).astype(np.float32)
        scores = quality_of(run, held_out, data.y_val)
        history.append(scores[_primary(run, scores)])
        # A GBDT's rounds found on a subsample do not carry over one for one: more rows
        # usually hold more rounds before the validation stops improving, so a refit on
        # every row for these rounds stops early. ``train_rows`` says what they were found
        # on; scaling them is the refit's decision.
        measured = TrialMetrics.trained(scores, refit_epochs=model.fitted_rounds).on_rows(
            len(data.y_train)
        )
    else:
        measured, held_out, model = _folds(run, family, params, seed, keep_going)
    fitted = FittedTrial(
        params=model.n_params,
        n_inputs=model.n_inputs,
        write_onnx=lambda path: onnx.save(model.to_onnx(), str(Path(path))),
        state=model.state_bytes,
        state_suffix=model.state_suffix,
    )
    return store_trial(run, trial.number, measured.in_processes(1), held_out, fitted)


def _primary(run: SearchRun, scores: dict[str, float]) -> str:
    primary = run.plan.objectives[0].metric
    return primary if primary in scores else proper_score(run.dataset.task)


def _folds(
    run: SearchRun,
    family: Family,
    params: dict[str, ParamValue],
    seed: int,
    keep_going: Callable[[], None],
) -> tuple[TrialMetrics, np.ndarray, TableModel]:
    """Every fold fitted from the same seed; the folds' mean metrics, the rounds a refit
    boosts (their mean, rounded up), and the out-of-fold predictions."""
    if run.folds is None:
        raise ValueError("no folds")
    per_fold: list[dict[str, float]] = []
    rounds: list[int] = []
    out_of_fold: np.ndarray | None = None
    first: TableModel | None = None
    for index, fold in enumerate(run.folds.data):
        model = fit_family(run, family, params, fold, seed=seed, keep_going=keep_going)
        first = first or model
        output = model.predict_rows(fold.x_val).astype(np.float32)
        if out_of_fold is None:
            out_of_fold = np.empty((len(run.folds.rows), output.shape[1]), dtype=np.float32)
        out_of_fold[run.folds.positions[index]] = output
        per_fold.append(quality_of(run, output, fold.y_val))
        rounds.append(model.fitted_rounds)
    if out_of_fold is None or first is None:
        raise ValueError("no folds")
    summary = TrialMetrics.folds_mean(
        per_fold, [count - 1 for count in rounds], _primary(run, per_fold[0])
    )
    return summary.on_rows(len(run.folds.data[0].y_train)), out_of_fold, first

"""The peers ModelKiln's table search is measured against, each fitted on exactly the rows
ModelKiln trains on (its training and validation split for a seed) and scored on its test
rows: LightGBM with default settings, FLAML AutoML and AutoGluon-Tabular (in its own
virtual environment, through ``bench/autogluon_fit.py``).

Every peer gets the table as pandas reads it, without the columns ModelKiln leaves out
(identifiers, row numbers, free text), text as pandas categoricals: their own handling of
categories and gaps, not ours."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
AUTOGLUON_PYTHON = ROOT / ".bench" / "autogluon" / "bin" / "python"
THREADS = 2  # the cores ModelKiln's two worker processes use


@dataclass(frozen=True)
class PeerSplit:
    """One seed's split of a table as the peers see it."""

    features: Any  # pandas DataFrame
    labels: np.ndarray
    fit_rows: np.ndarray  # ModelKiln's training and validation rows
    test_rows: np.ndarray
    task: str

    @property
    def truth(self) -> np.ndarray:
        return self.labels[self.test_rows]


@dataclass(frozen=True)
class PeerScore:
    score: float
    seconds: float
    chosen: str = ""  # the learner or model the peer picked


def peer_split(path: Path, target: str, task: str, seed: int) -> PeerSplit:
    """The rows ModelKiln keeps from ``path``, its split of them for ``seed``, and the
    columns it reads (as a frame with text as categoricals)."""
    import pandas as pd

    from app.contracts.enums import Task
    from app.datasets.parsing import parse_csv
    from app.datasets.splits import split_indices

    parsed = parse_csv(path, target=target, task=Task(task))
    frame = pd.read_csv(path)
    frame = frame[frame[target].notna()].reset_index(drop=True)
    if parsed.columns is None or len(frame) != parsed.n_rows:
        raise RuntimeError(f"{path.name}: pandas and ModelKiln keep different rows")
    used = [column.name for column in parsed.columns if column.type != "ignore"]
    features = frame[used].copy()
    for name in used:
        if features[name].dtype == object or features[name].dtype == bool:
            features[name] = features[name].astype(str).where(features[name].notna())
            features[name] = features[name].astype("category")
    splits = split_indices(parsed.target, parsed.task, seed=seed, features=parsed.features)
    fit_rows = np.concatenate([splits.train, splits.validation])
    return PeerSplit(features, parsed.target, fit_rows, splits.test, task)


def score_of(split: PeerSplit, predicted: np.ndarray) -> float:
    """Accuracy, or RMSE, on the test rows."""
    truth = split.truth
    if split.task == "classification":
        return float(np.mean(np.asarray(predicted).reshape(-1) == truth))
    error = np.asarray(predicted, dtype=np.float64).reshape(-1) - truth
    return float(np.sqrt(np.mean(error**2)))


def lightgbm_defaults(split: PeerSplit, seed: int) -> PeerScore:
    """LightGBM's scikit-learn estimator with its default settings (100 rounds, 31 leaves,
    native categoricals and gaps)."""
    import lightgbm

    started = time.perf_counter()
    estimator: Any = (
        lightgbm.LGBMClassifier(verbose=-1, random_state=seed, n_jobs=THREADS)
        if split.task == "classification"
        else lightgbm.LGBMRegressor(verbose=-1, random_state=seed, n_jobs=THREADS)
    )
    estimator.fit(split.features.iloc[split.fit_rows], split.labels[split.fit_rows])
    predicted = estimator.predict(split.features.iloc[split.test_rows])
    return PeerScore(score_of(split, predicted), time.perf_counter() - started, "lgbm")


def flaml_automl(split: PeerSplit, seed: int, budget: int) -> PeerScore:
    """FLAML's AutoML with its default learners, ``budget`` seconds on two cores."""
    from flaml import AutoML

    warnings.filterwarnings("ignore")  # sklearn's joblib notices, once per learner fit
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        X_train=split.features.iloc[split.fit_rows],
        y_train=split.labels[split.fit_rows],
        task=split.task,
        metric="accuracy" if split.task == "classification" else "rmse",
        time_budget=budget,
        n_jobs=THREADS,
        seed=seed,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    predicted = automl.predict(split.features.iloc[split.test_rows])
    return PeerScore(score_of(split, predicted), seconds, str(automl.best_estimator))


def autogluon_available() -> bool:
    return AUTOGLUON_PYTHON.exists()


def autogluon_tabular(split: PeerSplit, seed: int, budget: int) -> PeerScore:
    """AutoGluon-Tabular (``time_limit=budget``, its default presets, two cores), run in
    its own virtual environment on the same rows."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for name, rows in (("train", split.fit_rows), ("test", split.test_rows)):
            frame = split.features.iloc[rows].copy()
            frame["__label__"] = split.labels[rows]
            frame.to_parquet(folder / f"{name}.parquet")
        job = {"task": split.task, "time_limit": budget, "seed": seed, "threads": THREADS}
        (folder / "job.json").write_text(json.dumps(job))
        started = time.perf_counter()
        subprocess.run(
            [str(AUTOGLUON_PYTHON), str(ROOT / "bench" / "autogluon_fit.py"), str(folder)],
            check=True,
            capture_output=True,
        )
        seconds = time.perf_counter() - started
        result = json.loads((folder / "result.json").read_text())
    return PeerScore(float(result["score"]), seconds, str(result["model"]))

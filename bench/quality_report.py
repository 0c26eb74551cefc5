"""The search-quality report, rendered from the results store alone (``--render-only`` does
nothing else): whatever cells the store holds, a missing one shown as a dash, each summary line
saying over how many tables and table-seed pairs it is computed. The first budget is the
main one (every table and seed, every peer); each other budget recorded gets a table of its
own: ModelKiln and FLAML, and ModelKiln against the same seed at the main budget."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable

from bench.quality_grid import (
    MISSING,
    TableCells,
    budgets_in,
    flaml_targets,
    gap_between,
    gather,
    no_worse,
    score_text,
    shown_gap,
    within_margin,
    yes_no,
)
from bench.quality_store import OURS, CellRecord, SearchFacts

PEER_TITLES = {"lightgbm": "LightGBM defaults", "flaml": "FLAML", "autogluon": "AutoGluon"}


def wall_text(seconds: float, budget: int) -> str:
    """E.g. "62 s / 60 s (+3%)"."""
    return f"{seconds:.0f} s / {budget} s ({(seconds / budget - 1) * 100:+.0f}%)"


def ordered(names: Iterable[str], order: list[str]) -> list[str]:
    rank = {name: index for index, name in enumerate(order)}
    return sorted(set(names), key=lambda name: (rank.get(name, len(rank)), name))


def trials_text(facts: SearchFacts, family_order: list[str]) -> str:
    """Complete trials per family, and beside them the trials that ended otherwise."""
    names = ordered([*facts.family_trials, *facts.trial_states], family_order)
    parts = []
    for name in names:
        states = facts.trial_states.get(name, {})
        complete = facts.family_trials.get(name, states.get("complete", 0))
        others = ", ".join(
            f"{n} {state}" for state, n in sorted(states.items()) if state != "complete"
        )
        parts.append(f"{name} {complete}" + (f" ({others})" if others else ""))
    return ", ".join(parts) or MISSING


def searches(tables: list[TableCells]) -> list[tuple[TableCells, int, SearchFacts]]:
    return [
        (table, seed, record.search)
        for table in tables
        for seed, record in sorted(table.results.get(OURS, {}).items())
        if record.search is not None
    ]


def summary(tables: list[TableCells], peers: list[str], budget: int) -> list[str]:
    titles = "".join(f" {PEER_TITLES.get(p, p)} |" for p in peers)
    lines = [
        f"| table | rows | metric | seeds | ModelKiln |{titles} vs FLAML | vs LightGBM | "
        "≥ FLAML - 0.5 (RMSE +3%) | RMSE ≤ FLAML | ≥ LightGBM |",
        "|---|---|---|---|---|" + "---|" * len(peers) + "---|---|---|---|---|",
    ]
    for t in tables:
        cells = "".join(f" {score_text(t.mean(p))} |" for p in peers)
        rmse = MISSING if t.classification else yes_no(t.no_worse("flaml"))
        lines.append(
            f"| {t.name} | {t.rows} | {t.metric} | {len(t.seeds())} | {score_text(t.mean(OURS))} "
            f"|{cells} {t.shown_gap('flaml')} | {t.shown_gap('lightgbm')} | "
            f"{yes_no(t.within_margin('flaml'))} | {rmse} | {yes_no(t.no_worse('lightgbm'))} |"
        )
    lines += [
        "",
        f"Means are over each system's seeds; the comparisons over the seeds both have. "
        f"Targets at {budget} s:",
        "",
        *(target.line() for target in flaml_targets(tables)),
        *peer_means(tables, peers),
        *overrun(tables, budget),
    ]
    return lines


def peer_means(tables: list[TableCells], peers: list[str]) -> list[str]:
    lines = []
    for peer in peers:
        for classification in (True, False):
            group = [t for t in tables if t.classification == classification]
            gaps = [gap for t in group if (gap := t.gap(peer)) is not None]
            if not gaps:
                continue
            pairs = sum(len(t.paired_seeds(peer)) for t in group)
            kind = "classification" if classification else "regression"
            mean = shown_gap(statistics.fmean(gaps), classification)
            lines.append(
                f"- Mean over {len(gaps)} {kind} tables ({pairs} table-seed pairs) vs "
                f"{PEER_TITLES.get(peer, peer)}: {mean}"
            )
    return lines


def overrun(tables: list[TableCells], budget: int) -> list[str]:
    """The largest wall time over the budget: submit to registered version, and the job's
    own start to finish; how many jobs registered within 5% of the budget."""
    jobs = searches(tables)
    if not jobs:
        return []
    wall = max(jobs, key=lambda job: job[2].submit_to_registered_s)
    own = max(jobs, key=lambda job: job[2].started_to_finished_s)
    within = sum(1 for _, _, facts in jobs if facts.submit_to_registered_s <= budget * 1.05)
    return [
        f"- Largest wall time over the budget, submit to registered version: "
        f"{wall_text(wall[2].submit_to_registered_s, budget)} ({wall[0].name} seed {wall[1]}); "
        f"the job's own start to finish at most "
        f"{wall_text(own[2].started_to_finished_s, budget)} ({own[0].name} seed {own[1]}); "
        f"{within} of {len(jobs)} jobs registered within 5% of the budget"
    ]


def per_table(tables: list[TableCells], budget: int, family_order: list[str]) -> list[str]:
    lines = [
        "Per table: ModelKiln's complete trials per family (mean over its seeds), and its "
        "longest job: submit to registered version, and the job's own start to finish, "
        "against the budget.",
        "",
        "| table | rows | seeds | trials per family | submit → registered | start → finish |",
        "|---|---|---|---|---|---|",
    ]
    for t in tables:
        facts = [f for table, _, f in searches([t]) if table is t]
        if not facts:
            lines.append(f"| {t.name} | {t.rows} | 0 | {MISSING} | {MISSING} | {MISSING} |")
            continue
        names = ordered([n for f in facts for n in f.family_trials], family_order)
        trials = ", ".join(
            f"{n} {statistics.fmean(f.family_trials.get(n, 0) for f in facts):.1f}" for n in names
        )
        wall = max(f.submit_to_registered_s for f in facts)
        own = max(f.started_to_finished_s for f in facts)
        lines.append(
            f"| {t.name} | {t.rows} | {len(facts)} | {trials or MISSING} | "
            f"{wall_text(wall, budget)} | {wall_text(own, budget)} |"
        )
    return lines


def family_shares(tables: list[TableCells], family_order: list[str]) -> list[str]:
    """Where each family wins: its mean share of the registered models over the seeds, and
    in how many seeds its best trial led the search."""
    jobs = searches(tables)
    names = ordered([n for _, _, f in jobs for n in (*f.shares, *f.family_trials)], family_order)
    lines = [
        "Families: each family's mean share of the registered model over the seeds (a "
        "single winner's family 1, an average's members their weights), and in brackets "
        "the seeds in which its best trial led the search on its own evidence.",
        "",
        "| table | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    totals = dict.fromkeys(names, 0.0)
    counted = 0
    for t in tables:
        facts = [f for table, _, f in jobs if table is t]
        if not facts:
            continue
        counted += 1
        cells = []
        for name in names:
            share = statistics.fmean(f.shares.get(name, 0.0) for f in facts)
            totals[name] += share
            cells.append(f"{share:.2f} ({sum(1 for f in facts if f.led_by == name)})")
        lines.append(f"| {t.name} | " + " | ".join(cells) + " |")
    if counted:
        mean = " | ".join(f"{totals[n] / counted:.2f}" for n in names)
        lines.append(f"| mean of {counted} tables | {mean} |")
    return lines


def per_seed(
    tables: list[TableCells], peers: list[str], budget: int, family_order: list[str]
) -> list[str]:
    titles = "".join(f" {PEER_TITLES.get(p, p)} |" for p in peers)
    lines = [
        "Per seed. ModelKiln: the winner's family, its served p50 latency (batch 1, one "
        "thread) and file size, complete trials (in all and per family, with those that "
        "ended otherwise), the job's wall time (submit to registered version; its own start "
        "to finish) against the budget, and each family's best score on the search's own "
        "evidence (validation rows or folds: not the test rows). Peers: their score, and "
        "the learner or model they chose.",
        "",
        "| table | seed | ModelKiln | family | p50 ms | size | trials | trials per family | "
        f"submit → registered | start → finish | family bests |{titles}",
        "|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(peers),
    ]
    for t in tables:
        for seed in t.all_seeds():
            record = t.record(OURS, seed)
            lines.append(
                f"| {t.name} | {seed} | {t.cell(OURS, seed)} | "
                + search_cells(record, budget, family_order)
                + "".join(f" {peer_cell(t, peer, seed)} |" for peer in peers)
            )
    return lines


def search_cells(record: CellRecord | None, budget: int, family_order: list[str]) -> str:
    facts = record.search if record else None
    if facts is None:
        return " | ".join([MISSING] * 8) + " |"
    bests = ", ".join(
        f"{name} {score_text(facts.family_bests[name])}"
        for name in ordered(facts.family_bests, family_order)
    )
    return (
        f"{facts.family} | {facts.latency_ms:.3f} | {facts.size_bytes / 1024:.0f} KB | "
        f"{facts.trials} | {trials_text(facts, family_order)} | "
        f"{wall_text(facts.submit_to_registered_s, budget)} | "
        f"{wall_text(facts.started_to_finished_s, budget)} | {bests or MISSING} |"
    )


def peer_cell(table: TableCells, peer: str, seed: int) -> str:
    record = table.record(peer, seed)
    if record is None:
        return table.cell(peer, seed)
    return (
        f"{score_text(record.score)} ({record.chosen})"
        if record.chosen
        else score_text(record.score)
    )


def longer_budget(
    tables: list[TableCells],
    main: list[TableCells],
    budget: int,
    main_budget: int,
    family_order: list[str],
) -> list[str]:
    """ModelKiln and FLAML at a longer budget, per table and seed, beside ModelKiln's
    result on the same seed at the main budget."""
    at_main = {t.name: t for t in main}
    lines = [
        f"## {budget} s budget",
        "",
        f"ModelKiln and FLAML with {budget} s, per table and seed; beside them ModelKiln's "
        f"score on the same seed at {main_budget} s.",
        "",
        "| table | rows | metric | seed | ModelKiln | FLAML | difference | "
        f"≥ FLAML - 0.5 (RMSE +3%) | ModelKiln at {main_budget} s | ≥ same seed at "
        f"{main_budget} s | trials per family | submit → registered |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    compared = held = 0
    for t in tables:
        for seed in t.all_seeds():
            ours, flaml = t.score(OURS, seed), t.score("flaml", seed)
            gap = (
                None
                if ours is None or flaml is None
                else gap_between(ours, flaml, t.classification)
            )
            earlier = at_main[t.name].score(OURS, seed) if t.name in at_main else None
            kept = None
            if ours is not None and earlier is not None:
                kept = no_worse(gap_between(ours, earlier, t.classification), t.classification)
                compared, held = compared + 1, held + int(kept)
            record = t.record(OURS, seed)
            facts = record.search if record else None
            lines.append(
                f"| {t.name} | {t.rows} | {t.metric} | {seed} | {t.cell(OURS, seed)} | "
                f"{t.cell('flaml', seed)} | {shown_gap(gap, t.classification)} | "
                f"{yes_no(None if gap is None else within_margin(gap, t.classification))} | "
                f"{score_text(earlier)} | {yes_no(kept)} | "
                f"{trials_text(facts, family_order) if facts else MISSING} | "
                f"{wall_text(facts.submit_to_registered_s, budget) if facts else MISSING} |"
            )
    never_worse = f"- Never worse than the same seed at {main_budget} s: **" + (
        f"{yes_no(held == compared)}** ({held} of {compared} table-seeds)"
        if compared
        else f"{MISSING}** (no table-seed has both)"
    )
    return [
        *lines,
        "",
        f"Targets at {budget} s:",
        "",
        *(target.line() for target in flaml_targets(tables)),
        never_worse,
        *overrun(tables, budget),
    ]


def header(records: list[CellRecord], budgets: list[int], families: tuple[str, ...]) -> list[str]:
    dates = sorted({r.recorded_at[:10] for r in records if r.recorded_at})
    machines = sorted({r.machine for r in records if r.machine})
    hosts = {r.host for r in records if r.host}
    seconds = sum(r.seconds for r in records if r.ok)
    seeds = sorted({r.seed for r in records})
    asked = f', "families": {json.dumps(list(families))}' if families else ""
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}" if dates else MISSING
    return [
        "# Search quality: ModelKiln with only a time budget vs LightGBM, FLAML and AutoGluon",
        "",
        f"`bench/search_quality.py`, recorded {when} on {'; '.join(machines) or MISSING}"
        + (f" ({len(hosts)} hosts)" if len(hosts) > 1 else "")
        + f"; {len(records)} results, {seconds:.0f} s of searches and fits; budgets "
        f"{', '.join(f'{b} s' for b in budgets)}; seeds {', '.join(map(str, seeds))}. "
        "ModelKiln: `kiln serve` with 2 worker processes, each job "
        f'`{{"search": {{"timeout_s": B, "seed": S{asked}}}}}`; its score is the registered '
        "version's on the test split of seed S, from the served ONNX file fed raw columns. "
        "Peers, in the same run on the same seed's training and validation rows, scored on "
        "the same test rows: LightGBM's scikit-learn estimator with default settings; FLAML "
        "`AutoML.fit(time_budget=B, n_jobs=2)`; AutoGluon-Tabular `fit(time_limit=B, "
        "num_cpus=2)` with its default presets, in its own virtual environment "
        "(`make bench-venvs`). A cell not run yet shows a dash.",
        "",
    ]


def render(
    records: list[CellRecord],
    *,
    main_budget: int,
    families: tuple[str, ...],
    peer_order: list[str],
    family_order: list[str],
    table_order: list[str],
) -> str:
    """The whole report from the store's records (any subset of the cells)."""
    kept = [r for r in records if r.system != OURS or tuple(r.families) == families]
    budgets = sorted({main_budget, *budgets_in(kept)}, key=lambda b: (b != main_budget, b))
    main = gather(kept, main_budget, families, table_order)
    peers = ordered(
        {r.system for r in kept if r.budget == main_budget and r.system != OURS}, peer_order
    )
    lines = [
        *header(kept, budgets, families),
        f"## {main_budget} s budget",
        "",
        *summary(main, peers, main_budget),
        "",
        *per_table(main, main_budget, family_order),
        "",
        *family_shares(main, family_order),
        "",
        *per_seed(main, peers, main_budget, family_order),
    ]
    for budget in budgets[1:]:
        longer = gather(kept, budget, families, table_order)
        lines += ["", *longer_budget(longer, main, budget, main_budget, family_order)]
    return "\n".join(lines) + "\n"

"""The search-quality benchmark's results store and run plan: a rerun skips what is
recorded, tries failed cells again, survives a line cut off by a killed run, and keeps
budgets and ModelKiln's family choices apart."""

from __future__ import annotations

from pathlib import Path

from bench.quality_search import trial_states
from bench.quality_store import OURS, CellKey, CellRecord, ResultStore, SearchFacts, stamped
from bench.search_quality import LONG_PEERS, budgets_arg, planned_cells


def facts(wall: float = 62.0, own: float = 58.0, trials: int = 7) -> SearchFacts:
    return SearchFacts(
        job_id=1,
        version=1,
        family="gbdt",
        latency_ms=0.05,
        size_bytes=2048,
        trials=trials,
        family_bests={"gbdt": 0.85, "linear": 0.8, "mlp": None},
        family_trials={"gbdt": 5, "linear": 2, "mlp": 0},
        trial_states={"gbdt": {"complete": 5}, "linear": {"complete": 2}, "mlp": {"stopped": 1}},
        shares={"gbdt": 1.0},
        led_by="gbdt",
        baseline=0.5,
        submit_to_registered_s=wall,
        started_to_finished_s=own,
        submit_to_finished_s=wall + 0.5,
    )


def record(
    table: str = "penguins",
    seed: int = 0,
    system: str = OURS,
    budget: int = 60,
    score: float | None = 0.9,
    error: str | None = None,
    task: str = "classification",
    families: list[str] | None = None,
) -> CellRecord:
    return stamped(
        CellRecord(
            table=table,
            seed=seed,
            system=system,
            budget=budget,
            task=task,
            rows=344,
            score=score,
            seconds=61.0,
            chosen="gbdt" if system == OURS else "lgbm",
            families=families or [],
            error=error,
            search=facts() if system == OURS and error is None else None,
        )
    )


def test_a_record_reads_back_whole_with_its_date_and_machine(tmp_path: Path) -> None:
    path = tmp_path / "quality.jsonl"
    written = record()
    ResultStore(path).add(written)
    [again] = ResultStore(path).records()
    assert again == written and again.search == facts()
    assert again.recorded_at[:4].isdigit() and "CPUs" in again.machine


def test_a_rerun_runs_only_the_cells_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "quality.jsonl"
    cells = planned_cells([60], ["penguins", "attrition"], [0, 1], ["lightgbm"], [], [], ())
    assert len(cells) == 8
    first = ResultStore(path)
    for key in cells[:3]:
        first.add(record(key.table, key.seed, key.system, key.budget))
    rerun = ResultStore(path)
    assert rerun.left(cells) == cells[3:]
    assert [rerun.done(key) for key in cells] == [True] * 3 + [False] * 5


def test_a_failed_cell_is_tried_again_and_a_later_result_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "quality.jsonl"
    key = CellKey("penguins", 0, "flaml", 60)
    store = ResultStore(path)
    store.add(record(system="flaml", score=None, error="RuntimeError: out of memory"))
    assert ResultStore(path).left([key]) == [key]
    store.add(record(system="flaml", score=0.97))
    reread = ResultStore(path)
    assert reread.left([key]) == []
    assert [r.score for r in reread.records()] == [0.97]


def test_a_line_cut_off_by_a_killed_run_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "quality.jsonl"
    ResultStore(path).add(record(seed=0))
    with path.open("a") as handle:
        handle.write('{"table": "penguins", "seed": 1, "sys')  # killed mid-write
    store = ResultStore(path)
    assert store.unreadable_lines == 1
    store.add(record(seed=2))
    reread = ResultStore(path)
    assert sorted(r.seed for r in reread.records()) == [0, 2]
    assert reread.unreadable_lines == 1


def test_budgets_and_family_choices_are_separate_cells(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "quality.jsonl")
    store.add(record(budget=60))
    assert not store.done(CellKey("penguins", 0, OURS, 300))
    assert not store.done(CellKey("penguins", 0, OURS, 60, ("gbdt",)))
    assert store.done(CellKey("penguins", 0, OURS, 60))


def test_longer_budgets_run_modelkiln_and_flaml_on_their_own_tables_and_seeds() -> None:
    cells = planned_cells(
        [60, 300],
        ["penguins"],
        [0, 1, 2],
        ["lightgbm", "flaml"],
        ["attrition", "diamonds"],
        [0],
        ("gbdt", "mlp"),
    )
    main = [key for key in cells if key.budget == 60]
    longer = [key for key in cells if key.budget == 300]
    assert len(main) == 9 and {key.system for key in main} == {OURS, "lightgbm", "flaml"}
    assert [(key.table, key.seed, key.system) for key in longer] == [
        ("attrition", 0, OURS),
        ("attrition", 0, "flaml"),
        ("diamonds", 0, OURS),
        ("diamonds", 0, "flaml"),
    ]
    assert {key.families for key in cells if key.system == OURS} == {("gbdt", "mlp")}
    assert {key.families for key in cells if key.system != OURS} == {()}
    assert LONG_PEERS == ["flaml"]


def test_budgets_take_commas_or_spaces() -> None:
    assert budgets_arg(["60,300"]) == [60, 300]
    assert budgets_arg(["60", "300"]) == [60, 300]
    assert budgets_arg(["20"]) == [20]


def test_trials_are_counted_per_family_and_state() -> None:
    trials = [
        {"state": "complete", "params": {"family": "gbdt"}},
        {"state": "complete", "params": {"family": "gbdt"}},
        {"state": "stopped", "params": {"family": "mlp"}},
        {"state": "pruned", "params": {"family": "mlp"}},
    ]
    assert trial_states(trials, ["gbdt", "mlp"]) == {
        "gbdt": {"complete": 2},
        "mlp": {"stopped": 1, "pruned": 1},
    }
    assert trial_states([{"state": "complete", "params": {}}], ["mlp"]) == {"mlp": {"complete": 1}}

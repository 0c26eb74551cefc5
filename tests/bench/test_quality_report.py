"""The search-quality report rendered from a store with only some of its cells: missing
cells show a dash, summary lines say what they are computed over, each target reads yes
or no, and a longer budget is reported apart, beside the same seed at the main budget."""

from __future__ import annotations

from pathlib import Path

from bench.quality_grid import MISSING, gather
from bench.quality_report import render, wall_text
from bench.quality_store import OURS, ResultStore
from tests.bench.test_quality_store import facts, record

ORDER = {
    "peer_order": ["lightgbm", "flaml", "autogluon"],
    "family_order": ["mlp", "gbdt", "linear"],
    "table_order": ["penguins", "attrition", "diamonds"],
}


def partial_store(tmp_path: Path) -> ResultStore:
    """penguins: both seeds for ModelKiln and LightGBM, FLAML for seed 0 only; diamonds
    (regression): ModelKiln seed 0 and FLAML seed 0; attrition: only a failed FLAML fit."""
    store = ResultStore(tmp_path / "quality.jsonl")
    store.add(record("penguins", 0, OURS, score=0.98))
    store.add(record("penguins", 1, OURS, score=0.96))
    store.add(record("penguins", 0, "lightgbm", score=0.97))
    store.add(record("penguins", 1, "lightgbm", score=0.96))
    store.add(record("penguins", 0, "flaml", score=0.99))
    store.add(record("diamonds", 0, OURS, score=530.0, task="regression"))
    store.add(record("diamonds", 0, "flaml", score=540.0, task="regression"))
    store.add(record("attrition", 0, "flaml", score=None, error="RuntimeError: boom"))
    return store


def test_the_wall_time_reads_against_the_budget() -> None:
    assert wall_text(62.0, 60) == "62 s / 60 s (+3%)"
    assert wall_text(57.0, 60) == "57 s / 60 s (-5%)"


def test_comparisons_use_the_seeds_both_systems_have(tmp_path: Path) -> None:
    tables = gather(partial_store(tmp_path).records(), 60, (), ORDER["table_order"])
    penguins, attrition, diamonds = tables
    assert [t.name for t in tables] == ["penguins", "attrition", "diamonds"]
    assert penguins.mean(OURS) == 0.97
    assert penguins.paired_seeds("flaml") == [0]
    assert round(penguins.gap("flaml") or 0.0, 6) == -1.0  # 0.98 vs 0.99 on seed 0
    assert penguins.shown_gap("flaml") == "-1.00 points (1 seeds)"
    assert penguins.within_margin("flaml") is False
    assert attrition.cell("flaml", 0) == "failed" and attrition.cell(OURS, 0) == MISSING
    assert round(diamonds.gap("flaml") or 0.0, 4) == round(530 / 540 - 1, 4)
    assert diamonds.no_worse("flaml") is True


def test_a_partial_store_renders_with_dashes_and_counts(tmp_path: Path) -> None:
    report = render(partial_store(tmp_path).records(), main_budget=60, families=(), **ORDER)
    lines = report.splitlines()
    summary = next(line for line in lines if line.startswith("| penguins | 344 | accuracy"))
    assert "| 2 | 0.9700 | 0.9650 | 0.9900 |" in summary
    attrition = next(line for line in lines if line.startswith("| attrition | 344 |"))
    assert f"| 0 | {MISSING} | {MISSING} |" in attrition
    assert (
        "- Every table ≥ FLAML - 0.5 points (regression: RMSE within 3%): **no** "
        "(1 of 2 tables; 2 table-seed pairs)" in lines
    )
    assert any(
        line.startswith("- Mean over the classification tables ≥ FLAML + 0.5 points: **no**")
        and "over 1 tables, 1 table-seed pairs" in line
        for line in lines
    )
    assert any(
        line.startswith("- Regression RMSE ≤ FLAML on every table: **yes**") for line in lines
    )
    assert any(
        "Largest wall time over the budget, submit to registered version: 62 s / 60 s (+3%)" in line
        and "3 of 3 jobs registered within 5% of the budget" in line
        for line in lines
    )
    per_seed = next(line for line in lines if line.startswith("| penguins | 1 | 0.9600 | gbdt"))
    assert (
        "| 7 | mlp 0 (1 stopped), gbdt 5, linear 2 | 62 s / 60 s (+3%) | 58 s / 60 s (-3%) |"
        in (per_seed)
    )
    assert per_seed.endswith(f"| 0.9600 (lgbm) | {MISSING} |")
    assert "| attrition | 0 | " + " | ".join([MISSING] * 10) + " | failed |" in report
    assert "300 s budget" not in report


def test_a_longer_budget_is_reported_apart_beside_the_same_seed(tmp_path: Path) -> None:
    store = partial_store(tmp_path)
    store.add(record("penguins", 0, OURS, budget=300, score=0.975))
    store.add(record("penguins", 0, "flaml", budget=300, score=0.97))
    store.add(record("diamonds", 0, OURS, budget=300, score=520.0, task="regression"))
    report = render(store.records(), main_budget=60, families=(), **ORDER)
    main, longer = report.split("## 300 s budget")
    assert "0.975" not in main  # a longer budget's results stay out of the main tables
    penguins = next(line for line in longer.splitlines() if line.startswith("| penguins |"))
    assert "| 0 | 0.9750 | 0.9700 | +0.50 points | yes | 0.9800 | no |" in penguins
    diamonds = next(line for line in longer.splitlines() if line.startswith("| diamonds |"))
    assert f"| 520.0000 | {MISSING} | {MISSING} | {MISSING} | 530.0000 | yes |" in diamonds
    assert "- Never worse than the same seed at 60 s: **no** (1 of 2 table-seeds)" in longer


def test_a_store_of_one_family_choice_renders_only_its_searches(tmp_path: Path) -> None:
    store = partial_store(tmp_path)
    store.add(record("penguins", 0, OURS, score=0.5, families=["gbdt"]))
    default = render(store.records(), main_budget=60, families=(), **ORDER)
    chosen = render(store.records(), main_budget=60, families=("gbdt",), **ORDER)
    assert "| penguins | 0 | 0.9800 |" in default and "| penguins | 0 | 0.5000 |" in chosen
    assert '"families": ["gbdt"]' in chosen
    assert wall_text(facts().submit_to_registered_s, 60) in chosen

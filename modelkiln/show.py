"""``kiln jobs show`` and ``kiln datasets show``: one job or one dataset's profile as text."""

from __future__ import annotations

from typing import Any

from modelkiln.client import Job
from modelkiln.progress import best_text, count_text, time_text


def _fields(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        if value not in (None, "", [], {}):
            print(f"{name.ljust(width)}  {value}")


def show_job(job: Job) -> None:
    """Status, progress, the plan a search chose, what it registered or why it failed."""
    data, result = job.data, job.result or {}
    plan = result.get("plan") or {}
    search = (data.get("spec") or {}).get("search") or {}
    _fields(
        [
            ("job", f"{job.id} ({job.kind})"),
            ("status", job.status),
            ("model", job.model_name),
            ("dataset", data.get("dataset_id")),
            ("progress", count_text(job)),
            ("time", time_text(job)),
            ("best", best_text(job) if job.best_value is not None else None),
            ("attempt", f"{data.get('attempt')} of {data.get('max_attempts')}"),
            ("worker", data.get("worker")),
            ("algorithm", plan.get("algorithm") or search.get("algorithm")),
            ("pruner", plan.get("pruner") or search.get("pruner")),
            ("parallelism", plan.get("parallelism") or search.get("parallelism")),
            (
                "objectives",
                ", ".join(
                    f"{o['metric']} ({o['direction']})" for o in plan.get("objectives") or []
                ),
            ),
            ("registered", ", ".join(f"v{v}" for v in job.registered_versions)),
            ("serving", job.serving.summary if job.serving else None),
            (
                "test metrics",
                ", ".join(
                    f"{name}={value:.4g}"
                    for name, value in (result.get("metrics") or {}).items()
                    if isinstance(value, int | float)
                ),
            ),
            ("error", job.error),
        ]
    )


def _column_detail(column: dict[str, Any]) -> str:
    if column.get("reason"):
        return str(column["reason"])
    if column.get("top"):
        return ", ".join(f"{entry['value']} ({entry['rows']})" for entry in column["top"][:5])
    if column.get("earliest"):
        return f"{column['earliest']} to {column['latest']}"
    if column.get("min") is not None:
        return f"min {column['min']:.4g}, mean {column['mean']:.4g}, max {column['max']:.4g}"
    return ""


def show_dataset(data: dict[str, Any]) -> None:
    """The dataset, then its profile: one line per column, the target, rows left out."""
    _fields(
        [
            ("dataset", f"{data['id']}: {data['name']}"),
            ("rows", data.get("rows")),
            ("task", data.get("task")),
            ("target", data.get("target")),
        ]
    )
    profile = data.get("profile") or {}
    columns = profile.get("columns") or []
    if columns:
        rows = [
            [
                c["name"],
                c["type"],
                c.get("missing", 0),
                "" if c.get("distinct") is None else c["distinct"],
                _column_detail(c),
            ]
            for c in columns
        ]
        header = ["COLUMN", "TYPE", "MISSING", "DISTINCT", "VALUES / WHY LEFT OUT"]
        cells = [header, *[[str(cell) for cell in row] for row in rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        print()
        for row in cells:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    target = profile.get("target") or {}
    if target.get("classes"):
        print(
            "\ntarget classes: "
            + ", ".join(f"{c['label']} ({c['rows']})" for c in target["classes"])
        )
    elif target.get("min") is not None:
        print(f"\ntarget: min {target['min']:.4g}, max {target['max']:.4g}")
    for dropped in profile.get("dropped") or []:
        print(
            f"left out: {dropped['rows']} rows, {dropped['reason']} (first at line "
            f"{dropped['first_line']})"
        )

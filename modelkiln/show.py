"""``kiln jobs show`` and ``kiln datasets show``: one job or one dataset's profile as text."""

from __future__ import annotations

from modelkiln.answers import ColumnProfile, Dataset, DatasetProfile
from modelkiln.job import Job, SearchPlan, SearchSettings, Selection
from modelkiln.progress import best_text, count_text, time_text

# A value printed beside its name: what a job or dataset answer holds, as it came.
Shown = str | int | float | None


def _fields(pairs: list[tuple[str, Shown]]) -> None:
    width = max(len(name) for name, _ in pairs)
    for name, value in pairs:
        if value not in (None, ""):
            print(f"{name.ljust(width)}  {value}")


def show_job(job: Job) -> None:
    """Status, progress, the plan a search chose, what it registered or why it failed."""
    result = job.result
    plan = (result.plan if result else None) or SearchPlan()
    search = job.spec.search or SearchSettings()
    _fields(
        [
            ("job", f"{job.id} ({job.kind})"),
            ("status", job.status),
            ("model", job.model_name),
            ("dataset", job.dataset_id),
            ("progress", count_text(job)),
            ("time", time_text(job)),
            ("now", job.progress.phase),
            ("best", best_text(job) if job.best_value is not None else None),
            ("attempt", f"{job.attempt} of {job.max_attempts}"),
            ("worker", job.worker),
            ("algorithm", plan.algorithm or search.algorithm),
            ("pruner", plan.pruner or search.pruner),
            ("parallelism", plan.parallelism or search.parallelism),
            ("objectives", ", ".join(f"{o.metric} ({o.direction})" for o in plan.objectives)),
            ("registered", ", ".join(f"v{v}" for v in job.registered_versions)),
            ("serving", job.serving.summary if job.serving else None),
            (
                "test metrics",
                ", ".join(
                    f"{name}={value:.4g}"
                    for name, value in (result.metrics if result else {}).items()
                ),
            ),
            ("families", _families(result.selection if result else None)),
            ("left out", "; ".join(f"{note.family}: {note.reason}" for note in plan.left_out)),
            ("error", job.error),
        ]
    )
    if result and result.phases:
        print("\nPHASE" + " " * 21 + "PLANNED    TOOK  NOTE")
        for phase in result.phases:
            planned = "-" if phase.planned_s is None else f"{phase.planned_s:.1f} s"
            print(
                f"{phase.name:<26}{planned:>7}  {phase.took_s:>6.1f} s  {phase.note or ''}".rstrip()
            )


def _families(selection: Selection | None) -> str | None:
    """Each searched family's complete trials and best score, on one line."""
    if selection is None or not selection.families:
        return None
    return ", ".join(
        f"{f.family} {f.trials} complete" + ("" if f.best is None else f" (best {f.best:.4g})")
        for f in selection.families
    )


def _column_detail(column: ColumnProfile) -> str:
    if column.reason:
        return column.reason
    if column.top:
        return ", ".join(f"{entry.value} ({entry.rows})" for entry in column.top[:5])
    if column.earliest:
        return f"{column.earliest} to {column.latest}"
    if column.min is not None:
        return f"min {column.min:.4g}, mean {column.mean:.4g}, max {column.max:.4g}"
    return ""


def show_dataset(dataset: Dataset) -> None:
    """The dataset, then its profile: one line per column, the target, rows left out."""
    _fields(
        [
            ("dataset", f"{dataset.id}: {dataset.name}"),
            ("rows", dataset.rows),
            ("task", dataset.task),
            ("target", dataset.target),
        ]
    )
    profile = dataset.profile or DatasetProfile()
    if profile.columns:
        rows = [
            [
                c.name,
                c.type,
                c.missing,
                "" if c.distinct is None else c.distinct,
                _column_detail(c),
            ]
            for c in profile.columns
        ]
        header = ["COLUMN", "TYPE", "MISSING", "DISTINCT", "VALUES / WHY LEFT OUT"]
        cells = [header, *[[str(cell) for cell in row] for row in rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        print()
        for row in cells:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    target = profile.target
    if target.classes:
        print("\ntarget classes: " + ", ".join(f"{c.label} ({c.rows})" for c in target.classes))
    elif target.min is not None:
        print(f"\ntarget: min {target.min:.4g}, max {target.max:.4g}")
    for dropped in profile.dropped:
        print(
            f"left out: {dropped.rows} rows, {dropped.reason} (first at line {dropped.first_line})"
        )

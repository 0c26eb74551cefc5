"""The Pareto chart's axes (``app.ui.charts.pareto``): what it may draw beside the first two
objectives (every other objective, and each cost every complete trial measured as served,
memory and energy included), each trial's value there, and the dropdown that picks one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.api.schemas import TrialRead
from app.search.kind import ParetoTrial

# Costs a trial may have measured as served, offered as the Pareto chart's axes beside
# its objectives when every complete trial has them (memory and energy: see
# app.evaluation.footprint; measured when an objective or a constraint names one).
CHART_COSTS = (
    "latency_ms",
    "size_bytes",
    "params",
    "peak_memory_mb",
    "peak_memory_b256_mb",
    "energy_mj_per_1k_rows",
)


Columns = dict[str, tuple[list[float | None], list[float | None]]]


def _trial_value(trial: TrialRead, metric: str, objectives: list[str]) -> float | None:
    """A trial's objective value, else what its metrics measured of ``metric``."""
    if metric in objectives and trial.values is not None:
        return trial.values[objectives.index(metric)]
    value = (trial.metrics or {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def axis_title(metric: str, done: Sequence[TrialRead]) -> str:
    """The metric's name; energy's says where it comes from ('rapl' or 'estimate')."""
    if metric != "energy_mj_per_1k_rows":
        return metric
    sources = sorted({str((t.metrics or {}).get("energy_source", "?")) for t in done})
    return f"{metric} ({', '.join(sources)})"


def pareto_axes(done: Sequence[TrialRead], objectives: list[str]) -> list[str]:
    """What the Pareto chart may draw on either axis: the objectives, then each cost that
    every complete trial measured."""
    measured = [
        cost
        for cost in CHART_COSTS
        if cost not in objectives
        and done
        and all(_trial_value(t, cost, objectives) is not None for t in done)
    ]
    return [*objectives, *measured]


def axis_menu(
    axis: str, axes: list[str], columns: Columns, active: int, done: Sequence[TrialRead]
) -> dict[str, Any]:
    """A dropdown that redraws ``axis`` ('x' or 'y') as any of ``axes``: both traces' values
    (the trials', the front's), the axis title; the front's step line goes, as a front
    seen on other axes is not one."""
    return {
        "buttons": [
            {
                "label": f"{axis}: {name}",
                "method": "update",
                "args": [
                    {axis: [list(columns[name][0]), list(columns[name][1])], "mode": ["markers"]},
                    {f"{axis}axis.title.text": axis_title(name, done)},
                ],
            }
            for name in axes
        ],
        "active": active,
        "direction": "down",
        "showactive": True,
        "x": 0.0 if axis == "x" else 0.35,
        "xanchor": "left",
        "y": 1.22,
        "yanchor": "top",
    }


def axis_values(
    rest: Sequence[TrialRead],
    front: Sequence[ParetoTrial],
    done: Sequence[TrialRead],
    axes: list[str],
    objectives: list[str],
) -> Columns:
    """Per axis, the values of the trials off the front and of the front's, in the order
    the chart draws them."""
    by_number = {t.number: t for t in done}

    def on_front(entry: ParetoTrial, metric: str) -> float | None:
        if metric in entry.values:
            return entry.values[metric]
        trial = by_number.get(entry.trial)
        return None if trial is None else _trial_value(trial, metric, objectives)

    return {
        name: (
            [_trial_value(t, name, objectives) for t in rest],
            [on_front(entry, name) for entry in front],
        )
        for name in axes
    }

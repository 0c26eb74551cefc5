"""Plotly figures (``{"data": [...], "layout": {...}}``) for the dashboard, built on the
server from the same read models the API answers with; the page only draws them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.api.schemas import TrialRead
from app.contracts.params import ParamValue
from app.contracts.results import Objective, ReportRow
from app.search.kind import ParetoTrial
from app.search.space import FAMILY_KEY
from app.search.trial_metrics import TrialMetrics
from app.training.families.registry import TABLE_FAMILIES, family_named
from app.ui.parallel import varied
from app.ui.pareto_axes import axis_menu, axis_title, axis_values, pareto_axes

Figure = dict[str, Any]
MARGIN = {"l": 60, "r": 20, "t": 30, "b": 50}
# Below this many complete trials a one-way share of variance is noise: with as many
# trials as parameters, every parameter "explains" everything.
MIN_IMPORTANCE_TRIALS = 8


def _figure(data: list[dict[str, Any]], x: str, y: str, **layout: Any) -> Figure:
    return {
        "data": data,
        "layout": {
            "xaxis": {"title": {"text": x}},
            "yaxis": {"title": {"text": y}},
            "margin": MARGIN,
            "hovermode": "closest",
            "height": 340,
            **layout,
        },
    }


def _params_text(params: dict[str, ParamValue]) -> str:
    return "<br>".join(f"{key}: {value}" for key, value in sorted(params.items()))


def history(trials: Sequence[TrialRead], metric: str, maximize: bool) -> Figure:
    """Every complete trial's value by trial number, the best so far as a step line, and
    pruned trials at their last validation value."""
    done = sorted(
        (t for t in trials if t.state == "complete" and t.value is not None), key=lambda t: t.number
    )
    best: list[float] = []
    for trial in done:
        value = float(trial.value)  # type: ignore[arg-type]
        best.append(value if not best else (max if maximize else min)(best[-1], value))
    pruned = [t for t in trials if t.state == "pruned" and t.intermediate]
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "trial",
            "x": [t.number for t in done],
            "y": [t.value for t in done],
            "text": [_params_text(t.params) for t in done],
            "hoverinfo": "x+y+text",
        },
        {
            "type": "scatter",
            "mode": "lines",
            "name": "best so far",
            "line": {"shape": "hv"},
            "x": [t.number for t in done],
            "y": best,
        },
    ]
    if pruned:
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "pruned",
                "marker": {"symbol": "x", "color": "#999"},
                "x": [t.number for t in pruned],
                "y": [t.intermediate[-1] for t in pruned],
                "text": [_params_text(t.params) for t in pruned],
            }
        )
    return _figure(data, "trial", metric)


def table_family(params: dict[str, ParamValue]) -> str | None:
    """The family of a trial that trains without epochs (gbdt, linear), else None: its
    ``family`` parameter, or in a one-family search the prefix of its parameters."""
    family = params.get(FAMILY_KEY)
    if family is not None:
        return str(family) if family in TABLE_FAMILIES else None
    for table in TABLE_FAMILIES:
        if any(name.startswith(f"{table}_") for name in params):
            return str(table)
    return None


def learning_curves(trials: Sequence[TrialRead], metric: str) -> Figure:
    """The validation metric after each epoch, one line per network trial; pruned trials
    dotted and ending in a cross. Trees and linear models have no epochs (their one
    recorded value is their final score): they are left out (``epochless_note``)."""
    data = []
    for trial in sorted(trials, key=lambda t: t.number):
        if not trial.intermediate or table_family(trial.params) is not None:
            continue
        pruned = trial.state == "pruned"
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers" if pruned else "lines",
                "name": f"trial {trial.number}" + (" (pruned)" if pruned else ""),
                "x": list(range(1, len(trial.intermediate) + 1)),
                "y": trial.intermediate,
                "line": {"dash": "dot" if pruned else "solid", "width": 1},
                "marker": {"symbol": "x", "size": [0] * (len(trial.intermediate) - 1) + [9]}
                if pruned
                else {},
            }
        )
    return _figure(data, "epoch", f"validation {metric}", showlegend=False)


def epochless_note(trials: Sequence[TrialRead]) -> str | None:
    """Which trials the learning curves leave out, and why (None: none)."""
    counts = Counter(f for t in trials if (f := table_family(t.params)) is not None)
    if not counts:
        return None
    listed = " and ".join(f"{n} {family}" for family, n in sorted(counts.items()))
    plural = "s" if sum(counts.values()) > 1 else ""
    return (
        f"Not drawn: {listed} trial{plural}, which train without epochs (a GBDT boosts until "
        "its validation rows stop improving, a linear model is fitted in one go); their "
        "scores are in the optimisation history and the trials table."
    )


def epochs_text(trial: TrialRead) -> str:
    """The trials table's epochs: a network's count, a GBDT's boosting rounds kept, and
    nothing for a linear model."""
    family = table_family(trial.params)
    if family is None:
        return str(len(trial.intermediate))
    try:
        rounds = TrialMetrics.model_validate(trial.metrics or {}).refit_epochs
    except ValidationError:  # metrics of another shape (another release's): no count
        rounds = None
    boosted = family_named(family).boosts
    return f"{rounds} rounds" if boosted and rounds is not None else "\u2013"


def _as_numbers(values: list[Any]) -> tuple[np.ndarray, list[str] | None]:
    """Numbers stay numbers; anything else becomes the index of its sorted label."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=float), None
    labels = sorted({str(v) for v in values})
    return np.asarray([labels.index(str(v)) for v in values], dtype=float), labels


def importances(trials: Sequence[TrialRead]) -> dict[str, float]:
    """How much of the spread of the objective each parameter explains on its own: the
    share of the variance between the groups of its values (numbers in quartile bins),
    one-way, normalised to sum to 1. A quick guide, not a causal claim."""
    done = [t for t in trials if t.state == "complete" and t.value is not None]
    names = varied(done)
    if len(done) < 3 or not names:
        return {}
    values = np.asarray([t.value for t in done], dtype=float)
    total = float(((values - values.mean()) ** 2).sum())
    shares: dict[str, float] = {}
    for name in names:
        column = [t.params.get(name) for t in done]
        numbers, labels = _as_numbers(["" if v is None else v for v in column])
        if labels is None and len(set(numbers.tolist())) > 4:
            edges = np.quantile(numbers, [0.25, 0.5, 0.75])
            numbers = np.searchsorted(edges, numbers, side="right").astype(float)
        between = sum(
            ((values[numbers == g].mean() - values.mean()) ** 2) * (numbers == g).sum()
            for g in set(numbers.tolist())
        )
        shares[name] = float(between / total) if total > 0 else 0.0
    scale = sum(shares.values())
    if scale <= 0:
        return {name: 0.0 for name in names}
    return dict(sorted(((n, s / scale) for n, s in shares.items()), key=lambda item: item[1]))


def importance_note(trials: Sequence[TrialRead], shares: dict[str, float]) -> str | None:
    """Why the importances are missing or not to be trusted, or None."""
    complete = sum(t.state == "complete" and t.value is not None for t in trials)
    if complete < MIN_IMPORTANCE_TRIALS:
        return (
            f"Not shown: {complete} complete trial{'s' if complete != 1 else ''}; "
            f"importances need at least {MIN_IMPORTANCE_TRIALS} to mean anything."
        )
    if shares and max(shares.values()) - min(shares.values()) < 1e-6:
        return (
            "Every parameter explains the same share: these trials do not tell them "
            "apart (too few, or parameters that changed together)."
        )
    return None


def importance_bars(shares: dict[str, float]) -> Figure:
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "x": list(shares.values()),
            "y": list(shares.keys()),
            "name": "importance",
        }
    ]
    longest = max((len(name) for name in shares), default=10)
    return _figure(
        data,
        "share of the objective's variance explained",
        "",
        height=max(200, 40 * len(shares) + 80),
        margin={**MARGIN, "l": 20 + 7 * longest},
        yaxis={"automargin": True, "title": {"text": ""}},
    )


def pareto(
    trials: Sequence[TrialRead], front: Sequence[ParetoTrial], objectives: Sequence[dict[str, str]]
) -> Figure:
    """The first two objectives: every complete trial, the front drawn over it; hovering
    a point shows its parameters (and, on the front, its registered version). With more
    to draw (other objectives, costs every trial measured: ``pareto_axes``), a dropdown
    per axis picks what it shows."""
    every = [Objective.model_validate(objective).metric for objective in objectives]
    drawn = [Objective.model_validate(objective) for objective in objectives[:2]]
    names = [objective.metric for objective in drawn]
    done = [t for t in trials if t.state == "complete" and t.values and len(t.values) >= 2]
    on_front = {entry.trial for entry in front}
    rest = [t for t in done if t.number not in on_front]
    ordered = sorted(front, key=lambda e: e.values[names[0]])
    axes = pareto_axes(done, every)
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "trial",
            "marker": {"color": "#bbb"},
            "x": [t.values[0] for t in rest],  # type: ignore[index]
            "y": [t.values[1] for t in rest],  # type: ignore[index]
            "text": [f"trial {t.number}<br>{_params_text(t.params)}" for t in rest],
        },
        {
            "type": "scatter",
            "mode": "markers+lines",
            "name": "Pareto front",
            "line": {"shape": "hv"},
            "marker": {"size": 10},
            "x": [e.values[names[0]] for e in ordered],
            "y": [e.values[names[1]] for e in ordered],
            "text": [
                f"trial {e.trial} → version {e.version}<br>{_params_text(e.params)}"
                for e in ordered
            ],
        },
    ]
    menus: dict[str, Any] = {}
    if len(axes) > 2:
        columns = axis_values(rest, ordered, done, axes, every)
        menus = {
            "updatemenus": [
                axis_menu("x", axes, columns, axes.index(names[0]), done),
                axis_menu("y", axes, columns, axes.index(names[1]), done),
            ],
            "margin": {**MARGIN, "t": 70},
        }
    return _figure(
        data,
        f"{axis_title(names[0], done)} ({drawn[0].direction})",
        f"{axis_title(names[1], done)} ({drawn[1].direction})",
        **menus,
    )


def _quality(row: ReportRow) -> tuple[str, float | None]:
    if row.accuracy is not None:
        return "accuracy", row.accuracy
    return "r2", row.r2


def compression_tradeoffs(rows: Sequence[ReportRow]) -> tuple[Figure, Figure]:
    """Quality against size, and against latency, for the parent and every variant; the
    recommended one drawn as a star."""
    metric = _quality(rows[0])[0] if rows else "accuracy"

    def figure(x_of: str, title: str) -> Figure:
        data = []
        for role, symbol in (("parent", "square"), ("variant", "circle")):
            chosen = [r for r in rows if (r.role == "parent") == (role == "parent")]
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "name": role,
                    "marker": {"symbol": symbol, "size": 10},
                    "x": [getattr(r, x_of) for r in chosen],
                    "y": [_quality(r)[1] for r in chosen],
                    "text": [f"v{r.version} {r.method or 'parent'}" for r in chosen],
                }
            )
        best = [r for r in rows if r.recommended]
        data.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "recommended",
                "marker": {"symbol": "star", "size": 18, "color": "#e6a700"},
                "x": [getattr(r, x_of) for r in best],
                "y": [_quality(r)[1] for r in best],
                "text": [f"v{r.version} {r.method or 'parent'}" for r in best],
            }
        )
        return _figure(data, title, metric, xaxis={"title": {"text": title}, "type": "log"})

    return figure("size_bytes", "size (bytes)"), figure("latency_p50_ms", "latency p50 (ms)")


def points(figure: Figure) -> int:
    """How many points a figure draws (what the browser test counts)."""
    return sum(len(trace.get("x") or []) for trace in figure["data"] if "x" in trace)

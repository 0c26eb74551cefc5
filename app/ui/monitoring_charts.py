"""Plotly figures of what serving measured, for the model page's drift panel and the
serving page: each column's PSI over the drift windows, a column's training and live
distributions, and a model's requests per second, error rate, latency percentiles and
traffic split over time. Built on the server like ``app.ui.charts``; the page draws them."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.api.serving_stats import ServingStats, VersionSeries

Figure = dict[str, Any]
MARGIN = {"l": 60, "r": 20, "t": 30, "b": 50}

SHOWN_PSI_LINES = 10  # columns drawn at first when none drifted (the rest one click away)
PERCENTILE_DASHES = (("p50_ms", "solid"), ("p95_ms", "dash"), ("p99_ms", "dot"))
# Plotly's own colours, one per version on every chart of a model (its lines and its bar).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def plain(text: str) -> str:
    """``text`` as Plotly shows it literally: its labels read a subset of HTML (links
    included) and a hover template reads ``%{...}``, so a column or category named like
    markup is escaped, and its ``%`` written as an entity Plotly turns back into one."""
    return html.escape(text, quote=True).replace("%", "&#37;")


def _layout(
    x: str, y: str, *, y_format: str | None = None, x_range: list[int] | None = None, **extra: Any
) -> dict[str, Any]:
    """A chart's layout: axes titled ``x`` and ``y`` (the y axis from zero, its ticks as
    ``y_format`` says; the x axis over ``x_range``), overridden by ``extra``."""
    x_axis: dict[str, object] = {"title": {"text": x}}
    if x_range is not None:
        x_axis["range"] = x_range
    y_axis: dict[str, object] = {"title": {"text": y}, "rangemode": "tozero"}
    if y_format is not None:
        y_axis["tickformat"] = y_format
    return {
        "xaxis": x_axis,
        "yaxis": y_axis,
        "margin": MARGIN,
        "hovermode": "closest",
        "height": 320,
        # Below the x axis's title, however many lines it takes.
        "legend": {"orientation": "h", "y": -0.3, "yanchor": "top"},
        **extra,
    }


def _clock(stamp: str) -> str:
    """A stored window's end as Plotly reads a date (it ignores zone offsets: all UTC)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")


def psi_over_time(windows: Sequence[dict[str, Any]], order: Sequence[str]) -> Figure:
    """Each column's PSI over the windows (oldest first), a line per column of ``order``,
    those that drifted in any window first and drawn, the others in the legend (a click
    draws them; all of them when none drifted and they are few); and the threshold."""
    ended = [_clock(window["ended_at"]) for window in windows]
    drifted = {column for window in windows for column in window.get("drifted", [])}
    psi_by_column = [{c["column"]: c.get("psi") for c in window["columns"]} for window in windows]
    series = {column: [psi.get(column) for psi in psi_by_column] for column in order}
    highest = {
        c: max((v for v in values if v is not None), default=0.0) for c, values in series.items()
    }
    # Drifted in any window first, then by the highest PSI each reached.
    ranked = sorted(order, key=lambda c: (c not in drifted, -highest[c]))
    data: list[dict[str, Any]] = []
    for index, column in enumerate(ranked):
        values = series[column]
        shown = column in drifted or (not drifted and index < SHOWN_PSI_LINES)
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": plain(column),
                "meta": column,  # what a click on the line draws the distributions of
                "x": ended,
                "y": values,
                "visible": True if shown else "legendonly",
                "hovertemplate": f"{plain(column)}<br>PSI %{{y:.4f}}<br>%{{x}}<extra></extra>",
            }
        )
    data.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "threshold",
            "x": ended,
            "y": [window["threshold"] for window in windows],
            "line": {"dash": "dash", "color": "#b91c1c", "width": 1},
            "hoverinfo": "skip",
        }
    )
    return {"data": data, "layout": _layout("window ended (UTC)", "PSI", height=340)}


def distribution(
    column: str, labels: Sequence[str], reference: Sequence[float], live: Sequence[float] | None
) -> Figure:
    """A column's share per bucket in training and in the newest window, side by side."""
    data = [
        {
            "type": "bar",
            "name": "training",
            "x": [plain(label) for label in labels],
            "y": [round(float(share), 6) for share in reference],
            "marker": {"color": "#94a3b8"},
        }
    ]
    if live is not None:
        data.append(
            {
                "type": "bar",
                "name": "live",
                "x": [plain(label) for label in labels],
                "y": list(live),
                "marker": {"color": "#c2410c"},
            }
        )
    margin = {**MARGIN, "b": 90}
    layout = _layout(
        plain(column), "share of values", y_format=".0%", barmode="group", margin=margin
    )
    return {"data": data, "layout": layout}


def _label(series: VersionSeries) -> str:
    if series.role == "shadow":
        return f"v{series.version} (shadow)"
    return f"v{series.version}" + (f" ({series.weight}%)" if series.weight is not None else "")


def _colour(version: int) -> str:
    return PALETTE[(version - 1) % len(PALETTE)]


def _line(
    series: VersionSeries, x: list[int], y: Sequence[float | None], dash: str | None = None
) -> dict[str, Any]:
    """A version's line: its colour; the shadow's dashed unless ``dash`` says otherwise."""
    return {
        "type": "scatter",
        "mode": "lines",
        "name": _label(series),
        "legendgroup": f"{series.role}-{series.version}",
        "x": x,
        "y": list(y),
        "line": {
            "color": _colour(series.version),
            "dash": dash or ("dash" if series.role == "shadow" else "solid"),
            "width": 1.5,
        },
    }


def _error_percent(series: VersionSeries) -> list[float | None]:
    triples = zip(series.requests, series.client_errors, series.server_errors, strict=True)
    return [round(100 * (c + s) / n, 3) if n else None for n, c, s in triples]


def serving_figures(stats: ServingStats) -> dict[str, Figure]:
    """The model's charts, by name: requests per second, error rate and latency per
    version (each version in its colour; the shadow's lines dashed and named as such),
    and the split."""
    x = list(range(-stats.seconds, 0))  # seconds ago; the newest complete second is -1
    rate, errors, latency = [], [], []
    for series in stats.series:
        rate.append(_line(series, x, series.requests))
        errors.append(_line(series, x, _error_percent(series)))
        for field, dash in PERCENTILE_DASHES:
            line = _line(series, x, getattr(series, field), dash)
            line["name"] = f"{_label(series)} {field.removesuffix('_ms')}"
            latency.append(line)
    ago = "seconds ago"
    log_ms = {"type": "log", "title": {"text": "latency (ms)"}}
    return {
        "rate": {"data": rate, "layout": _layout(ago, "requests/s")},
        "errors": {"data": errors, "layout": _layout(ago, "errors (% of requests)")},
        "latency": {"data": latency, "layout": _layout(ago, "latency (ms)", yaxis=log_ms)},
        "split": split_figure(stats),
    }


def split_figure(stats: ServingStats) -> Figure:
    """The production alias's weights beside the share each version answered in the
    window (requests that named a version included), as stacked bars; the shadow answers
    no one, so it has no bar."""
    answered = [s for s in stats.series if s.role == "answered"]
    total = sum(s.totals.requests for s in answered)
    weights = {arm.version: arm.weight for arm in stats.production or []}
    counts = {s.version: s.totals.requests for s in answered}
    data = []
    for version in sorted(weights.keys() | counts.keys()):
        share = round(100 * counts.get(version, 0) / total, 1) if total else 0
        data.append(
            {
                "type": "bar",
                "orientation": "h",
                "name": f"v{version}",
                "y": ["weight", "answered"],
                "x": [weights.get(version, 0), share],
                "text": [f"v{version} {weights.get(version, 0)}%", f"v{version} {share:g}%"],
                "hovertext": [
                    f"v{version}: weight {weights.get(version, 0)}%",
                    f"v{version}: answered {counts.get(version, 0)} requests ({share:g}%)",
                ],
                "textposition": "inside",
                "marker": {"color": _colour(version)},
                "hovertemplate": "%{hovertext}<extra></extra>",
            }
        )
    layout = _layout("% of requests", "", x_range=[0, 100], barmode="stack", height=220)
    return {"data": data, "layout": layout}

"""The model page's serving loop: how the production alias routes (weights, shadow), how
each shadow agrees with what answered, drift for the version the page shows (how far the
next window has got and what it still needs, each column's PSI over the kept windows, a
column's training and live distributions), and the model's latest events."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise

from app.contracts.traffic import (
    AliasPolicy,
    ColumnDrift,
    DriftProgress,
    DriftReport,
    ModelEvent,
    ShadowStats,
)
from app.core.config import Settings
from app.core.db import Session
from app.registry import drift_progress, monitoring, traffic
from app.registry.service import get_model, get_version
from app.serving.drift import ColumnReference, reference_of
from app.ui import monitoring_charts

EVENTS_SHOWN = 10


@dataclass
class NextWindow:
    """How far the version's next drift window has got, over its gateway processes."""

    gateways: list[DriftProgress]
    rows: int  # the fullest process's rows (the first window to fill, traffic spread evenly)
    window_rows: int
    sample: float
    rows_needed: int | None  # about how many more predicted rows, over every process

    @property
    def share(self) -> float:
        return min(1.0, self.rows / max(self.window_rows, 1))


@dataclass
class DriftPanel:
    """What the drift section shows for one version."""

    version: int
    newest: DriftReport | None = None
    columns: list[ColumnDrift] = field(default_factory=list)  # drifted first, then by PSI
    windows: int = 0
    next_window: NextWindow | None = None
    waiting: str | None = None  # why there is no window yet, and what one needs
    figures: dict[str, monitoring_charts.Figure] = field(default_factory=dict)
    shown_column: str | None = None  # whose distributions are drawn first (until a click)


def bucket_labels(reference: ColumnReference) -> list[str]:
    """The names of a reference's buckets, in its order (the last: gaps)."""
    if reference.edges is not None:
        edges = [f"{edge:.3g}" for edge in reference.edges]
        inner = [f"[{low}, {high})" for low, high in pairwise(edges)]
        return [f"< {edges[0]}", *inner, f"≥ {edges[-1]}", "gaps"]
    return [*reference.values, "other", "gaps"]


def ordered(report: DriftReport) -> list[ColumnDrift]:
    """The report's columns, drifted first, then by PSI (highest first), then by name."""
    drifted = set(report.drifted)
    return sorted(
        report.columns,
        key=lambda c: (c.column not in drifted, -(c.psi if c.psi is not None else -1), c.column),
    )


def _next_window(gateways: list[DriftProgress]) -> NextWindow | None:
    if not gateways:
        return None
    fullest = max(gateways, key=lambda g: g.rows / max(g.window_rows, 1))
    needed = None
    if fullest.sample > 0:
        # Requests spread over the processes: each answers its share, and the first window
        # comes when the fullest one's fills.
        needed = len(gateways) * (fullest.rows_to_window or 0)
    return NextWindow(gateways, fullest.rows, fullest.window_rows, fullest.sample, needed)


def _waiting(
    session: Session, version_id: int, version: int, settings: Settings, has_windows: bool
) -> str | None:
    """Why the version has no window, or what the first one needs (None: it has one)."""
    if settings.drift_sample <= 0:
        return "Drift is off: KILN_DRIFT_SAMPLE is 0 on this gateway."
    if monitoring.drift_reference(session, version_id) is None:
        return (
            f"Version {version} has no training profile to compare with (an uploaded ONNX "
            "model): drift is not measured for it. Retrain it on a dataset to measure drift."
        )
    if has_windows:
        return None
    needed = math.ceil(round(settings.drift_window_rows / settings.drift_sample, 6))
    return (
        f"No sampled rows yet. A window needs {settings.drift_window_rows:,} sampled rows "
        f"(KILN_DRIFT_WINDOW_ROWS); this gateway samples {settings.drift_sample:.0%} of "
        f"requests (KILN_DRIFT_SAMPLE), so about {needed:,} predicted rows."
    )


def drift_panel(session: Session, name: str, version: int, settings: Settings) -> DriftPanel:
    """Drift of ``version``: its windows over time, the newest column by column, its next
    window's progress, and each column's distributions (training and newest window)."""
    row = get_version(session, name, version)
    windows = drift_progress.version_windows(session, name, version)
    panel = DriftPanel(version=version, windows=len(windows))
    gateways = [p for p in drift_progress.progress(session, name) if p.version == version]
    panel.next_window = _next_window([g for g in gateways if g.rows > 0])
    if panel.next_window is None:
        panel.waiting = _waiting(session, row.id, version, settings, bool(windows))
    if not windows:
        return panel
    panel.newest = DriftReport.model_validate(windows[-1])
    panel.columns = ordered(panel.newest)
    panel.figures["drift-psi"] = monitoring_charts.psi_over_time(
        windows, [c.column for c in panel.columns]
    )
    found = monitoring.drift_reference(session, row.id)
    if found is None:
        return panel
    references = {r.name: r for r in reference_of(*found)}
    for column in panel.columns:
        reference = references.get(column.column)
        if reference is None or reference.expected is None:
            continue
        live = column.live_shares
        if live is not None and len(live) != len(reference.expected):
            live = None
        share = reference.expected / max(float(reference.expected.sum()), 1e-12)
        panel.figures[f"drift-column:{column.column}"] = monitoring_charts.distribution(
            column.column, bucket_labels(reference), share.tolist(), live
        )
        panel.shown_column = panel.shown_column or column.column
    return panel


@dataclass(frozen=True)
class LoopPanel:
    """What the model page shows of the traffic loop (empty parts are left out)."""

    policy: AliasPolicy | None
    shadows: list[ShadowStats]
    drift: DriftPanel | None  # of the version the page shows
    events: list[ModelEvent]


def monitoring_panel(
    session: Session, name: str, version: int | None, settings: Settings
) -> LoopPanel:
    """The model's traffic loop; drift for ``version`` (the version the page shows)."""
    policy = traffic.serving_policy(session, get_model(session, name))
    return LoopPanel(
        policy=policy,
        shadows=monitoring.current_shadow_stats(session, name, policy),
        drift=drift_panel(session, name, version, settings) if version else None,
        events=monitoring.events(session, name, EVENTS_SHOWN),
    )

"""Drift: the live values of each input column against the training profile stored on the
version's dataset, over windows of ``KILN_DRIFT_WINDOW_ROWS`` rows.

Per column: the population stability index (PSI) over the training deciles (numbers) or
the most frequent values, the rest and gaps (categories); the share of gaps; for categories
the share of values training never saw. The request path only samples a request
(``KILN_DRIFT_SAMPLE``) onto the monitors' queue; their thread counts a batch of samples at
once (each column's values concatenated, one vectorised count per column) and reports."""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from app.contracts.encoding import CategoricalColumn, TableEncoding
from app.contracts.profile import ColumnProfile
from app.contracts.traffic import ColumnDrift, DriftReport
from app.serving.observations import Observation
from app.serving.runtime import Feeds, LoadedModel

SHARE_FLOOR = 1e-4  # an empty bin's share, so the index stays finite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same buckets."""
    e = np.maximum(expected / max(expected.sum(), 1e-12), SHARE_FLOOR)
    a = np.maximum(actual / max(actual.sum(), 1e-12), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class ColumnReference:
    """One column's training distribution: buckets (bins or values, the rest, gaps)."""

    name: str
    kind: str
    expected: np.ndarray | None  # shares per bucket, the last one gaps (None: not measured)
    missing_share: float
    edges: np.ndarray | None = None  # numeric: the bins' inner edges
    values: tuple[str, ...] = ()  # categorical: the values with a bucket of their own
    known: frozenset[str] = frozenset()  # categorical: every value training saw
    feature: int | None = None  # a tensor model's position of the column


def reference_of(
    columns: list[ColumnProfile],
    encoding: TableEncoding | None,
    rows: int,
    features: list[str] | None = None,
) -> list[ColumnReference]:
    """The references of a dataset's profiled columns (ignored ones left out); a column's
    position in a tensor model's row comes from the encoding, or (a table of numbers
    without one) from the dataset's ``features``."""
    positions: dict[str, int] = {}
    if encoding is not None:
        spans = zip(encoding.columns, encoding.spans(), strict=True)
        positions = {column.name: span[0] for column, span in spans}
    elif features is not None:
        positions = {name: index for index, name in enumerate(features)}
    known: dict[str, frozenset[str]] = {}
    if encoding is not None:
        for column in encoding.columns:
            if isinstance(column, CategoricalColumn):
                known[column.name] = frozenset(column.categories) | frozenset(
                    column.frequencies or {}
                )
    references = []
    for profile in columns:
        if profile.type == "ignored":
            continue
        missing = profile.missing / max(rows, 1)
        feature = positions.get(profile.name)
        if profile.type == "numeric" and profile.edges is not None and profile.shares:
            shares = np.array(profile.shares) * (1 - missing)
            references.append(
                ColumnReference(
                    profile.name,
                    "numeric",
                    np.append(shares, missing),
                    missing,
                    edges=np.array(profile.edges),
                    feature=feature,
                )
            )
        elif profile.type == "categorical" and profile.top is not None:
            top = np.array([count.rows for count in profile.top], dtype=np.float64) / max(rows, 1)
            rest = max(1.0 - missing - top.sum(), 0.0)
            references.append(
                ColumnReference(
                    profile.name,
                    "categorical",
                    np.concatenate([top, [rest, missing]]),
                    missing,
                    values=tuple(count.value for count in profile.top),
                    known=known.get(profile.name, frozenset(c.value for c in profile.top)),
                )
            )
        else:  # dates, and numbers profiled before bins were kept: gaps only
            references.append(
                ColumnReference(profile.name, profile.type, None, missing, feature=feature)
            )
    return references


@dataclass
class _Counts:
    """A window's counts of one column."""

    buckets: np.ndarray
    rows: int = 0
    missing: int = 0
    unseen: int = 0


def _column_values(reference: ColumnReference, model: LoadedModel, feeds: Feeds) -> np.ndarray:
    if model.columns is not None:
        return feeds[reference.name].reshape(-1)
    if reference.feature is None:
        raise KeyError(reference.name)
    rows = next(iter(feeds.values()))
    return rows.reshape(len(rows), -1)[:, reference.feature]


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def count(reference: ColumnReference, values: np.ndarray, counts: _Counts) -> None:
    """Add a slice of a column's live values to the window's counts (one pass over the
    distinct values for text, vectorised for numbers)."""
    if values.dtype == object:
        # Counted by value with a dict: no array sized by the longest string (a fixed-width
        # array of text costs rows x the longest value x 4 bytes).
        seen_times = Counter(_text(value) for value in values)
        counts.rows += len(values)
        slot = {value: index for index, value in enumerate(reference.values)}
        rest = len(reference.values)
        for value, seen in seen_times.items():
            if not value:
                counts.missing += seen
                if reference.kind == "categorical":
                    counts.buckets[-1] += seen
                continue
            if reference.kind == "categorical":
                counts.buckets[slot.get(value, rest)] += seen
                if value not in reference.known:
                    counts.unseen += seen
        return
    numbers = values.astype(np.float64, copy=False)
    gaps = np.isnan(numbers)
    missing = int(gaps.sum())
    counts.rows += len(numbers)
    counts.missing += missing
    if reference.kind == "numeric" and reference.edges is not None:
        bins = np.searchsorted(
            reference.edges, numbers[~gaps] if missing else numbers, side="right"
        )
        counts.buckets[: len(reference.edges) + 1] += np.bincount(
            bins, minlength=len(reference.edges) + 1
        )
        counts.buckets[-1] += missing


@dataclass
class _Window:
    references: list[ColumnReference]
    threshold: float
    counts: dict[str, _Counts]
    rows: int = 0

    @classmethod
    def open(cls, references: list[ColumnReference], threshold: float) -> _Window:
        counts = {
            r.name: _Counts(np.zeros(len(r.expected) if r.expected is not None else 1))
            for r in references
        }
        return cls(references, threshold, counts)

    def report(self, name: str, version: int) -> DriftReport:
        columns = []
        for reference in self.references:
            counts = self.counts[reference.name]
            value = (
                psi(reference.expected, counts.buckets)
                if reference.expected is not None and counts.rows
                else None
            )
            counted = float(counts.buckets.sum())
            columns.append(
                ColumnDrift(
                    column=reference.name,
                    kind=reference.kind,
                    psi=None if value is None or not math.isfinite(value) else round(value, 6),
                    missing_share=counts.missing / max(counts.rows, 1),
                    unseen_share=counts.unseen / max(counts.rows, 1)
                    if reference.kind == "categorical"
                    else None,
                    reference_missing_share=reference.missing_share,
                    live_shares=[round(float(n) / counted, 6) for n in counts.buckets]
                    if reference.expected is not None and counted > 0
                    else None,
                )
            )
        drifted = [c.column for c in columns if c.psi is not None and c.psi > self.threshold]
        return DriftReport(
            model=name,
            version=version,
            rows=self.rows,
            threshold=self.threshold,
            drifted=drifted,
            columns=columns,
            ended_at=datetime.now(UTC),
        )


def _merged(model: LoadedModel, observations: list[Observation]) -> Feeds:
    """The observations' feeds as one request's (each input's rows concatenated)."""
    if len(observations) == 1:
        return observations[0].feeds
    first = observations[0].feeds
    return {name: np.concatenate([item.feeds[name] for item in observations]) for name in first}


def _sliced(feeds: Feeds, start: int, stop: int) -> Feeds:
    return {name: values[start:stop] for name, values in feeds.items()}


GroupKey = tuple[str, int, int, float]  # model, version, version id, threshold
COUNT_ROWS = 1024  # sampled rows of a version counted together
COUNT_BYTES = 4 * 1048576  # what samples waiting to be counted may hold, all versions


class DriftMonitor:
    """Counts sampled rows into windows, a report per full window (thread-safe). Samples
    wait until a version has ``COUNT_ROWS`` rows (or ``COUNT_BYTES``) or a flush comes, so
    each column is counted over many rows at once: counting costs a few numpy calls per
    column, whatever the rows. A version without a training profile (an upload) is
    remembered in ``unmeasured``, so the request path stops sampling it."""

    def __init__(self, window_rows: int) -> None:
        self.window_rows = window_rows
        self.unmeasured: set[int] = set()  # version ids with nothing to compare with
        self._windows: dict[tuple[str, int], _Window] = {}
        self._references: dict[int, list[ColumnReference] | None] = {}
        self._pending: dict[GroupKey, list[Observation]] = {}
        self._pending_rows: dict[GroupKey, int] = {}
        self._pending_bytes = 0
        self._lock = threading.Lock()

    def add(
        self,
        observations: list[Observation],
        load: Callable[[int], list[ColumnReference] | None],
        *,
        now: bool = False,
    ) -> list[DriftReport]:
        """Take the sampled observations (``load(version_id)`` gives a version's
        references, or None) and count those that waited long enough (all with ``now``);
        the reports of every window that filled."""
        reports: list[DriftReport] = []
        with self._lock:
            for item in observations:
                if item.drift_threshold is None:
                    continue
                key = (item.name, item.version, item.model.version_id, item.drift_threshold)
                self._pending.setdefault(key, []).append(item)
                self._pending_rows[key] = self._pending_rows.get(key, 0) + item.rows
                self._pending_bytes += item.size
            due = [
                key
                for key, rows in self._pending_rows.items()
                if now or rows >= COUNT_ROWS or self._pending_bytes >= COUNT_BYTES
            ]
            for key in due:
                group = self._pending.pop(key)
                del self._pending_rows[key]
                self._pending_bytes -= sum(item.size for item in group)
                reports += self._count_group(key, group, load)
        return reports

    def progress(self) -> dict[tuple[str, int], int]:
        """The sampled rows of each (model, version)'s open window: those counted into it
        and those waiting to be."""
        with self._lock:
            rows = {key: window.rows for key, window in self._windows.items()}
            for (name, version, _, _), waiting in self._pending_rows.items():
                rows[(name, version)] = rows.get((name, version), 0) + waiting
        return rows

    def _count_group(
        self,
        key: GroupKey,
        group: list[Observation],
        load: Callable[[int], list[ColumnReference] | None],
    ) -> list[DriftReport]:
        name, version, version_id, threshold = key
        if version_id not in self._references:
            self._references[version_id] = load(version_id)
        references = self._references[version_id]
        if not references:
            self.unmeasured.add(version_id)
            return []
        model = group[0].model
        return self._count(name, version, model, _merged(model, group), references, threshold)

    def _count(
        self,
        name: str,
        version: int,
        model: LoadedModel,
        feeds: Feeds,
        references: list[ColumnReference],
        threshold: float,
    ) -> list[DriftReport]:
        reports = []
        total = len(next(iter(feeds.values())))
        start = 0
        while start < total:
            key = (name, version)
            window = self._windows.get(key)
            if window is None or window.threshold != threshold:
                window = self._windows[key] = _Window.open(references, threshold)
            stop = min(total, start + self.window_rows - window.rows)
            part = _sliced(feeds, start, stop) if (start, stop) != (0, total) else feeds
            for reference in references:
                try:
                    values = _column_values(reference, model, part)
                except KeyError:
                    continue  # a column this version does not read
                count(reference, values, window.counts[reference.name])
            window.rows += stop - start
            if window.rows >= self.window_rows:
                reports.append(window.report(name, version))
                del self._windows[key]
            start = stop
        return reports

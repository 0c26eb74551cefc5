"""Drift: the live values of each input column against the training profile stored on the
version's dataset, over windows of ``KILN_DRIFT_WINDOW_ROWS`` rows.

Per column: the population stability index (PSI) over the training deciles (numbers) or
the most frequent values, the rest and gaps (categories); the share of gaps; for categories
the share of values training never saw. The request path only samples a request
(``KILN_DRIFT_SAMPLE``) onto a bounded queue; the flusher counts and reports."""

from __future__ import annotations

import collections
import math
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from app.contracts.encoding import CategoricalColumn, TableEncoding
from app.contracts.profile import ColumnProfile
from app.contracts.traffic import ColumnDrift, DriftReport
from app.serving.runtime import Feeds, LoadedModel

SHARE_FLOOR = 1e-4  # an empty bin's share, so the index stays finite
QUEUE_LIMIT = 10_000  # sampled requests waiting to be counted; more are skipped


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


def count(reference: ColumnReference, values: np.ndarray, counts: _Counts) -> None:
    """Add one request's values of a column to the window's counts."""
    if values.dtype == object:
        text = [
            "" if v is None else (v.decode() if isinstance(v, bytes) else str(v)) for v in values
        ]
        gaps = np.array([not value for value in text])
        counts.rows += len(text)
        counts.missing += int(gaps.sum())
        if reference.kind == "categorical":
            slot = {value: index for index, value in enumerate(reference.values)}
            rest = len(reference.values)
            for value in text:
                if not value:
                    counts.buckets[-1] += 1
                    continue
                counts.buckets[slot.get(value, rest)] += 1
                counts.unseen += value not in reference.known
        return
    numbers = values.astype(np.float64)
    gaps = np.isnan(numbers)
    counts.rows += len(numbers)
    counts.missing += int(gaps.sum())
    if reference.kind == "numeric" and reference.edges is not None:
        bins = np.searchsorted(reference.edges, numbers[~gaps], side="right")
        counts.buckets[: len(reference.edges) + 1] += np.bincount(
            bins, minlength=len(reference.edges) + 1
        )
        counts.buckets[-1] += int(gaps.sum())


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


@dataclass
class _Sample:
    name: str
    version: int
    version_id: int
    model: LoadedModel
    feeds: Feeds
    threshold: float


@dataclass
class DriftMonitor:
    """Sampled requests in, a report per full window out (thread-safe)."""

    sample: float
    window_rows: int
    _queue: collections.deque[_Sample] = field(
        default_factory=lambda: collections.deque(maxlen=QUEUE_LIMIT), init=False
    )
    _windows: dict[tuple[str, int], _Window] = field(default_factory=dict, init=False)
    _references: dict[int, list[ColumnReference] | None] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def offer(
        self,
        name: str,
        version: int,
        version_id: int,
        model: LoadedModel,
        feeds: Feeds,
        threshold: float,
    ) -> None:
        """Queue a sampled request's rows; never blocks."""
        if self.sample <= 0 or (self.sample < 1 and random.random() >= self.sample):
            return
        self._queue.append(_Sample(name, version, version_id, model, feeds, threshold))

    def process(self, load: object) -> list[DriftReport]:
        """Count what was queued (``load(version_id)`` gives a version's references, or
        None); the reports of every window that filled."""
        reports = []
        with self._lock:
            while self._queue:
                sample = self._queue.popleft()
                if sample.version_id not in self._references:
                    self._references[sample.version_id] = load(sample.version_id)  # type: ignore[operator]
                references = self._references[sample.version_id]
                if not references:
                    continue
                key = (sample.name, sample.version)
                window = self._windows.get(key)
                if window is None or window.threshold != sample.threshold:
                    window = self._windows[key] = _Window.open(references, sample.threshold)
                for reference in references:
                    try:
                        values = _column_values(reference, sample.model, sample.feeds)
                    except KeyError:
                        continue  # a column this version does not read
                    count(reference, values, window.counts[reference.name])
                window.rows += len(next(iter(sample.feeds.values())))
                if window.rows >= self.window_rows:
                    reports.append(window.report(sample.name, sample.version))
                    del self._windows[key]
        return reports

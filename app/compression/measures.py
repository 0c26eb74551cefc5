"""What a compression measures of a model (its parent, or a variant), typed: the held-out
scores, the file's bytes, agreement with the parent, and the latencies (``Timings``, once
``measure.time_all`` has timed every model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.errors import BrokenInvariant
from app.evaluation.scores import Latency, TaskScores


@dataclass(frozen=True)
class Timings:
    """Milliseconds per call of the served file, at batch 1 and at batch 64."""

    single: Latency
    batch64: Latency

    def faster_of(self, other: Timings) -> Timings:
        """Each percentile's lower value of the two (a model keeps its best round)."""
        return Timings(self.single.lower(other.single), self.batch64.lower(other.batch64))

    def as_json(self) -> dict[str, float]:
        """The latencies under the names a version's metrics and a report use."""
        return {
            "latency_p50_ms": self.single.p50,
            "latency_p95_ms": self.single.p95,
            "latency_b64_p50_ms": self.batch64.p50,
            "latency_b64_p95_ms": self.batch64.p95,
        }


@dataclass
class Measured:
    """A model measured the way it will serve, on the job's test rows. ``agreement``: with
    the parent's outputs (variants only); ``sparsity`` and ``nonzero_params``: what a
    pruning reported; ``timings``: set once every model has been timed."""

    scores: TaskScores
    test_rows: int
    size_bytes: int
    gzip_bytes: int
    agreement: float | None = None
    params: int | None = None
    sparsity: float | None = None
    nonzero_params: int | None = None
    timings: Timings | None = None

    @property
    def timed(self) -> Timings:
        """The timings, which every model has by the time it is judged."""
        if self.timings is None:
            raise BrokenInvariant("the model was not timed yet (measure.time_all)")
        return self.timings

    @property
    def latency_p50_ms(self) -> float:
        return self.timed.single.p50

    def counts(self) -> dict[str, float | int | None]:
        """What was measured beside the scores, under a report row's names and in the order
        a version's metrics keep them. What was not measured is left out (a parent's
        agreement, an unpruned model's sparsity), but ``params`` is always there (None: a
        rewritten graph's, not counted)."""
        measured: dict[str, float | int | None] = {
            "test_rows": self.test_rows,
            "size_bytes": self.size_bytes,
            "gzip_bytes": self.gzip_bytes,
        }
        if self.agreement is not None:
            measured["agreement"] = self.agreement
        measured["params"] = self.params
        if self.sparsity is not None:
            measured["sparsity"] = self.sparsity
        if self.nonzero_params is not None:
            measured["nonzero_params"] = self.nonzero_params
        if self.timings is not None:
            measured.update(self.timings.as_json())
        return measured

    def as_json(self) -> dict[str, Any]:
        """The metrics a variant is registered with: its scores, then the counts."""
        return {**self.scores.as_json(), **self.counts()}

"""Running a job's compression: every chain from the parent, step by step (a prefix shared
by several chains runs once), each result measured against the parent, then the choice."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.compression.base import Candidate, CompressionData, get_compressor
from app.compression.choose import Verdict, judge, recommend
from app.compression.measure import measure, time_all
from app.compression.measures import Measured
from app.compression.spec import CompressionSpec, step_key
from app.evaluation.scores import ClassificationScores

logger = logging.getLogger(__name__)


@dataclass
class Variant:
    """One step's result: its method, the chain that led to it, and what was measured.
    ``parent`` is the index of the variant it was made from (None: the job's parent)."""

    method: str
    settings: dict[str, Any]  # the step as the request gave it (its method's own fields)
    chain: list[str]
    parent: int | None
    candidate: Candidate
    measured: Measured


@dataclass
class Outcome:
    """The parent's measurements, every variant, their verdicts and the recommendation."""

    parent_measured: Measured
    variants: list[Variant] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    recommended: int | None = None
    reason: str = ""


def measure_parent(parent: Candidate, data: CompressionData) -> tuple[Measured, np.ndarray]:
    """The parent measured exactly as its variants will be."""
    measured, output = measure(parent, data, parent_output=None)
    measured.params = parent.params
    return measured, output


def compress(
    parent: Candidate,
    data: CompressionData,
    spec: CompressionSpec,
    check: Callable[[], None],
    progress: Callable[[int], None] = lambda done: None,
) -> Outcome:
    """Make, measure and judge every variant the spec asks for."""
    parent_measured, parent_output = measure_parent(parent, data)
    outcome = Outcome(parent_measured=parent_measured)
    made: dict[str, int] = {}
    for chain in spec.methods:
        current, current_index = parent, None
        for depth, step in enumerate(chain):
            key = step_key(chain[: depth + 1])
            if key not in made:
                check()
                result = get_compressor(step).apply(current, data, check)
                measured, _ = measure(result, data, parent_output=parent_output)
                measured.params = result.params
                # What a pruning reports of its result (a method's report is its own).
                measured.sparsity = result.report.get("sparsity")
                measured.nonzero_params = result.report.get("nonzero_params")
                outcome.variants.append(
                    Variant(
                        method=step.method,
                        settings=step.model_dump(mode="json"),
                        chain=[item.method for item in chain[: depth + 1]],
                        parent=current_index,
                        candidate=result,
                        measured=measured,
                    )
                )
                made[key] = len(outcome.variants) - 1
                logger.info(
                    "%s: %s bytes, %s",
                    " > ".join(outcome.variants[-1].chain),
                    measured.size_bytes,
                    _quality(measured),
                )
                progress(len(made))
            current_index = made[key]
            current = outcome.variants[current_index].candidate
    timings = time_all([parent, *(variant.candidate for variant in outcome.variants)], data)
    parent_measured.timings = timings[0]
    for variant, timed in zip(outcome.variants, timings[1:], strict=True):
        variant.measured.timings = timed
    outcome.verdicts = [
        judge(data.task, parent_measured, variant.measured, spec.max_accuracy_drop)
        for variant in outcome.variants
    ]
    outcome.recommended, outcome.reason = recommend(
        outcome.verdicts, [variant.measured for variant in outcome.variants], spec.prefer
    )
    return outcome


def _quality(measured: Measured) -> str:
    scores = measured.scores
    if isinstance(scores, ClassificationScores):
        return f"accuracy {scores.accuracy:.4f}"
    return f"rmse {scores.rmse:.4f}"

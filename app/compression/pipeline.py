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
from app.compression.spec import CompressionSpec, step_key

logger = logging.getLogger(__name__)


@dataclass
class Variant:
    """One step's result: its method, the chain that led to it, and what was measured.
    ``parent`` is the index of the variant it was made from (None: the job's parent)."""

    method: str
    settings: dict[str, Any]
    chain: list[str]
    parent: int | None
    candidate: Candidate
    metrics: dict[str, Any]


@dataclass
class Outcome:
    """The parent's measurements, every variant, their verdicts and the recommendation."""

    parent_metrics: dict[str, Any]
    variants: list[Variant] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    recommended: int | None = None
    reason: str = ""


def measure_parent(parent: Candidate, data: CompressionData) -> tuple[dict[str, Any], np.ndarray]:
    """The parent measured exactly as its variants will be."""
    metrics, output = measure(parent, data, parent_output=None)
    metrics["params"] = parent.params
    return metrics, output


def compress(
    parent: Candidate,
    data: CompressionData,
    spec: CompressionSpec,
    check: Callable[[], None],
    progress: Callable[[int], None] = lambda done: None,
) -> Outcome:
    """Make, measure and judge every variant the spec asks for."""
    parent_metrics, parent_output = measure_parent(parent, data)
    outcome = Outcome(parent_metrics=parent_metrics)
    made: dict[str, int] = {}
    for chain in spec.methods:
        current, current_index = parent, None
        for depth, step in enumerate(chain):
            key = step_key(chain[: depth + 1])
            if key not in made:
                check()
                result = get_compressor(step).apply(current, data, check)
                metrics, _ = measure(result, data, parent_output=parent_output)
                metrics["params"] = result.params
                for name in ("sparsity", "nonzero_params"):
                    if name in result.report:
                        metrics[name] = result.report[name]
                outcome.variants.append(
                    Variant(
                        method=step.method,
                        settings=step.model_dump(mode="json"),
                        chain=[item.method for item in chain[: depth + 1]],
                        parent=current_index,
                        candidate=result,
                        metrics=metrics,
                    )
                )
                made[key] = len(outcome.variants) - 1
                logger.info(
                    "%s: %s bytes, %s",
                    " > ".join(outcome.variants[-1].chain),
                    metrics["size_bytes"],
                    _quality(metrics),
                )
                progress(len(made))
            current_index = made[key]
            current = outcome.variants[current_index].candidate
    timings = time_all([parent, *(variant.candidate for variant in outcome.variants)], data)
    outcome.parent_metrics.update(timings[0])
    for variant, timed in zip(outcome.variants, timings[1:], strict=True):
        variant.metrics.update(timed)
    outcome.verdicts = [
        judge(data.task, parent_metrics, variant.metrics, spec.max_accuracy_drop)
        for variant in outcome.variants
    ]
    outcome.recommended, outcome.reason = recommend(
        outcome.verdicts, [variant.metrics for variant in outcome.variants], spec.prefer
    )
    return outcome


def _quality(metrics: dict[str, Any]) -> str:
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.4f}"
    return f"rmse {metrics.get('rmse', float('nan')):.4f}"

"""Choosing the variant to recommend: the smallest (or fastest) among those that lose at
most ``max_accuracy_drop`` against the parent and are smaller or faster than it."""

from __future__ import annotations

from dataclasses import dataclass

from app.compression.measures import Measured
from app.contracts.enums import Task

# A variant counts as faster only when its p50 beats the parent's by this share: smaller
# differences are within the run-to-run noise of a shared machine.
FASTER_MARGIN = 0.05
SIZE_TIE = 0.02  # sizes this close to the smallest count as equal when ranking


def quality_drop(task: str, parent: Measured, variant: Measured) -> float:
    """How much worse the variant is: accuracy points lost (classification), or the
    relative RMSE increase (regression). Negative when it is better."""
    base, value = parent.scores.quality, variant.scores.quality
    if task == Task.CLASSIFICATION:
        return base - value
    return (value - base) / base if base > 0 else value


def is_smaller(parent: Measured, variant: Measured) -> bool:
    return variant.size_bytes < parent.size_bytes


def is_faster(parent: Measured, variant: Measured) -> bool:
    return variant.latency_p50_ms < parent.latency_p50_ms * (1 - FASTER_MARGIN)


@dataclass(frozen=True)
class Verdict:
    """Whether one variant may be recommended, and why not."""

    drop: float
    smaller: bool
    faster: bool
    qualifies: bool
    reason: str | None


def judge(task: str, parent: Measured, variant: Measured, max_drop: float) -> Verdict:
    """The verdict on one variant against its job's parent."""
    drop = quality_drop(task, parent, variant)
    smaller, faster = is_smaller(parent, variant), is_faster(parent, variant)
    reason = None
    if drop > max_drop + 1e-12:
        unit = "accuracy points" if task == Task.CLASSIFICATION else "relative RMSE"
        reason = f"loses {drop:.4f} {unit}, more than max_accuracy_drop {max_drop}"
    elif not (smaller or faster):
        reason = "neither smaller nor faster than the parent"
    return Verdict(
        drop=drop, smaller=smaller, faster=faster, qualifies=reason is None, reason=reason
    )


WORSE = {"size": "larger", "latency": "slower"}


@dataclass(frozen=True)
class Ranking:
    """The qualifying variants' sizes and p50 latencies, ranked by ``prefer`` first."""

    prefer: str
    size: dict[int, float]
    latency: dict[int, float]

    @classmethod
    def of(cls, eligible: list[int], variants: list[Measured], prefer: str) -> Ranking:
        return cls(
            prefer,
            {index: float(variants[index].size_bytes) for index in eligible},
            {index: variants[index].latency_p50_ms for index in eligible},
        )

    @property
    def order(self) -> tuple[str, str]:
        return ("size", "latency") if self.prefer == "size" else ("latency", "size")

    def values(self, measure: str) -> dict[int, float]:
        return self.size if measure == "size" else self.latency

    def equal(self, index: int) -> bool:
        """Whether the variant counts as equal to the best by the preferred measure."""
        first = self.values(self.order[0])
        margin = SIZE_TIE if self.prefer == "size" else FASTER_MARGIN
        return first[index] <= min(first.values()) * (1 + margin)

    def best(self) -> int:
        first, second = (self.values(measure) for measure in self.order)
        equal = [index for index in first if self.equal(index)]
        return min(equal, key=lambda index: (second[index], first[index]))

    def shown(self, measure: str, index: int) -> str:
        if measure == "size":
            return f"{int(self.size[index]):,} bytes"
        return f"p50 {self.latency[index]:.4g} ms"

    def passed_over(self, index: int, best: int, name: str) -> str:
        """Why qualifying variant ``index`` lost to ``best``, called ``name``."""
        first, second = self.order
        if not self.equal(index):
            return self._worse(first, index, best, name, "")
        equals = (
            f" (sizes within {SIZE_TIE:.0%} of the smallest count as equal)"
            if first == "size"
            else f" (latencies within {FASTER_MARGIN:.0%} of the fastest count as equal)"
        )
        for measure in (second, first):
            if self.values(measure)[index] > self.values(measure)[best]:
                return self._worse(measure, index, best, name, equals)
        return f"the same size and speed as {name}, which was made first"

    def _worse(self, measure: str, index: int, best: int, name: str, note: str) -> str:
        return (
            f"{WORSE[measure]} than {name}: {self.shown(measure, index)} against "
            f"{self.shown(measure, best)}{note}"
        )


def best_of(eligible: list[int], variants: list[Measured], prefer: str) -> int:
    """The smallest (size) or fastest (latency) variant. Sizes within ``SIZE_TIE`` of the
    smallest count as equal, and so do latencies within ``FASTER_MARGIN`` of the fastest;
    among equals the other measure decides (a few bytes should not buy a slower model)."""
    return Ranking.of(eligible, variants, prefer).best()


def passed_over(
    verdicts: list[Verdict], variants: list[Measured], prefer: str, best: int, name: str
) -> dict[int, str]:
    """Why each qualifying variant other than ``best`` (the recommended one, called
    ``name``) was not recommended: larger or slower than it, by the numbers."""
    eligible = [index for index, verdict in enumerate(verdicts) if verdict.qualifies]
    ranking = Ranking.of(eligible, variants, prefer)
    return {index: ranking.passed_over(index, best, name) for index in eligible if index != best}


def recommend(
    verdicts: list[Verdict], variants: list[Measured], prefer: str
) -> tuple[int | None, str]:
    """Index of the recommended variant (None: keep the parent) and the reason."""
    eligible = [index for index, verdict in enumerate(verdicts) if verdict.qualifies]
    if not eligible:
        if not verdicts:
            return None, "no variant was made"
        return None, (
            "the parent is recommended: no variant is both within "
            "max_accuracy_drop and smaller or faster than it"
        )
    best = best_of(eligible, variants, prefer)
    what = "smallest" if prefer == "size" else "fastest"
    return best, (
        f"the {what} of {len(eligible)} variant(s) within max_accuracy_drop "
        "that are smaller or faster than the parent"
    )

"""The recommendation rules: within the accuracy budget, smaller or faster than the parent,
then the smallest (or fastest); the parent, with the reason, when nothing qualifies."""

from __future__ import annotations

from app.compression.base import Candidate, CompressionData
from app.compression.choose import judge, passed_over, recommend
from app.compression.measures import Measured, Timings
from app.compression.pipeline import compress
from app.compression.record import report
from app.compression.spec import CompressionSpec, chain_problem, count_steps
from app.evaluation.scores import (
    ClassificationScores,
    Latency,
    RegressionScores,
    ResidualSummary,
)


def variant(
    accuracy: float, size: int, latency: float, rmse: float = 2.0, task: str = "classification"
) -> Measured:
    """A model measured with only what the choice reads: its accuracy (or RMSE, for a
    regressor), its bytes and its p50 latency."""
    scores = (
        ClassificationScores(accuracy, 0.0, 0.0, 0.0, 0.0, 0.0, [])
        if task == "classification"
        else RegressionScores(0.0, rmse, 0.0, 0.0, ResidualSummary([], [], [], []))
    )
    timings = Timings(Latency(latency, latency), Latency(latency, latency))
    return Measured(scores, test_rows=10, size_bytes=size, gzip_bytes=size, timings=timings)


PARENT = variant(0.95, 1000, 1.0)
REGRESSION_PARENT = variant(0.0, 1000, 1.0, rmse=2.0, task="regression")


def choose(
    variants: list[Measured],
    prefer: str = "size",
    task: str = "classification",
    max_drop: float = 0.01,
) -> tuple[int | None, str]:
    parent = PARENT if task == "classification" else REGRESSION_PARENT
    verdicts = [judge(task, parent, item, max_drop) for item in variants]
    return recommend(verdicts, variants, prefer)


def test_the_smallest_within_the_budget_wins() -> None:
    variants = [variant(0.945, 400, 1.0), variant(0.93, 100, 0.5), variant(0.95, 600, 0.4)]
    assert choose(variants)[0] == 0
    assert choose(variants, prefer="latency")[0] == 2


def test_a_variant_neither_smaller_nor_faster_is_never_recommended() -> None:
    same = variant(0.96, 1000, 0.99)  # better accuracy, same bytes, within latency noise
    index, reason = choose([same])
    assert index is None and "parent is recommended" in reason
    verdict = judge("classification", PARENT, same, 0.01)
    assert verdict.reason == "neither smaller nor faster than the parent"


def test_the_budget_is_a_hard_limit() -> None:
    verdict = judge("classification", PARENT, variant(0.9399, 10, 0.1), 0.01)
    assert not verdict.qualifies and "more than max_accuracy_drop 0.01" in str(verdict.reason)
    assert choose([variant(0.9399, 10, 0.1)])[0] is None
    assert choose([variant(0.9401, 10, 0.1)])[0] == 0


def test_regression_budget_is_a_relative_rmse_increase() -> None:
    regressor = "regression"
    assert choose([variant(0, 10, 1.0, 2.019, regressor)], task=regressor)[0] == 0
    assert choose([variant(0, 10, 1.0, 2.021, regressor)], task=regressor)[0] is None


def test_no_variants_keeps_the_parent() -> None:
    assert choose([]) == (None, "no variant was made")


def test_chains_are_checked_against_what_the_parent_has() -> None:
    spec = CompressionSpec.model_validate(
        {
            "methods": [
                "quantize_dynamic",
                ["distill", "prune_structured", "quantize_static"],
                ["distill", "prune_structured", "fp16"],
            ]
        }
    )
    assert count_steps(spec) == 5
    assert chain_problem(spec.methods, has_network=False, convolutional=False) is None
    images = CompressionSpec.model_validate({"methods": ["select_features"]})
    assert "convolutional" in str(
        chain_problem(images.methods, has_network=True, convolutional=True)
    )
    deep = CompressionSpec.model_validate(
        {
            "methods": [
                [  # Deep Compression's pipeline
                    {"method": "prune_unstructured", "sparsity": 0.9},
                    "share_weights",
                ],
                "binarize",
            ]
        }
    )
    assert chain_problem(deep.methods, has_network=True, convolutional=False) is None
    shared = CompressionSpec.model_validate({"methods": ["share_weights"]})
    assert "(share_weights) needs torch weights" in str(
        chain_problem(shared.methods, has_network=False, convolutional=False)
    )
    student = CompressionSpec.model_validate(
        {"methods": [[{"method": "distill", "student_hidden": [16]}, "select_features"]]}
    )
    assert chain_problem(student.methods, has_network=True, convolutional=True) is None


def test_near_ties_are_broken_by_the_other_measure() -> None:
    # 68 bytes smaller but five times slower (dynamic int8 convolutions) loses to a pruned
    # network of practically the same size.
    slow, fast = variant(0.95, 1000 - 300, 5.0), variant(0.95, 1000 - 290, 0.7)
    assert choose([slow, fast])[0] == 1
    assert choose([variant(0.95, 400, 0.50), variant(0.95, 900, 0.49)], prefer="latency")[0] == 0
    assert choose([variant(0.95, 400, 0.50), variant(0.95, 900, 0.30)], prefer="latency")[0] == 1


def why_not(variants: list[Measured], best: int, prefer: str = "size") -> dict[int, str]:
    verdicts = [judge("classification", PARENT, item, 0.01) for item in variants]
    return passed_over(verdicts, variants, prefer, best, "v7 (recommended)")


def test_a_qualifying_variant_not_recommended_says_what_the_recommended_one_beat() -> None:
    larger = why_not([variant(0.95, 400, 0.5), variant(0.95, 600, 0.4)], best=0)
    assert larger == {1: "larger than v7 (recommended): 600 bytes against 400 bytes"}
    near = why_not([variant(0.95, 400, 0.5), variant(0.95, 405, 0.9)], best=0)
    assert near[1].startswith("slower than v7 (recommended): p50 0.9 ms against p50 0.5 ms")
    assert "sizes within 2% of the smallest count as equal" in near[1]
    slower = why_not([variant(0.95, 400, 0.2), variant(0.95, 300, 0.5)], 0, prefer="latency")
    assert slower == {1: "slower than v7 (recommended): p50 0.5 ms against p50 0.2 ms"}
    twins = why_not([variant(0.95, 400, 0.5), variant(0.95, 400, 0.5)], best=0)
    assert twins == {1: "the same size and speed as v7 (recommended), which was made first"}
    # A variant that did not qualify keeps its own reason: only the qualifying ones are here.
    assert why_not([variant(0.95, 400, 0.5), variant(0.90, 100, 0.1)], best=0) == {}


def test_every_variant_of_a_real_compression_says_why_it_was_not_recommended(
    classification: tuple[Candidate, CompressionData],
) -> None:
    parent, data = classification
    spec = CompressionSpec.model_validate(
        {"methods": ["fp16", "quantize_dynamic", "quantize_static"], "max_accuracy_drop": 0.05}
    )
    outcome = compress(parent, data, spec, lambda: None)
    table = report(outcome, spec, model_name="blobs", root_version=1, versions=[2, 3, 4])
    [recommended] = [row for row in table.rows if row.recommended]
    assert recommended.role == "variant" and recommended.not_recommended_because is None
    others = [row for row in table.rows if not row.recommended]
    assert len(others) == 3 and all(row.not_recommended_because for row in others)
    passed = [row for row in others if row.role == "variant" and row.qualifies]
    assert passed, "fp16 and int8 both within the budget: one of them was passed over"
    name = f"v{recommended.version} (recommended)"
    assert all(name in str(row.not_recommended_because) for row in passed)
    parent_row = table.rows[0]
    assert parent_row.role == "parent"
    assert str(parent_row.not_recommended_because).startswith(f"{name} is within max_accuracy_drop")

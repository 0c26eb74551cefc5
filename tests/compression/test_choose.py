"""The recommendation rules: within the accuracy budget, smaller or faster than the parent,
then the smallest (or fastest); the parent, with the reason, when nothing qualifies."""

from __future__ import annotations

from typing import Any

from app.compression.choose import judge, recommend
from app.compression.spec import CompressionSpec, chain_problem, count_steps

PARENT = {"accuracy": 0.95, "rmse": 2.0, "size_bytes": 1000, "latency_p50_ms": 1.0}


def variant(accuracy: float, size: int, latency: float, rmse: float = 2.0) -> dict[str, Any]:
    return {"accuracy": accuracy, "rmse": rmse, "size_bytes": size, "latency_p50_ms": latency}


def choose(
    variants: list[dict[str, Any]],
    prefer: str = "size",
    task: str = "classification",
    max_drop: float = 0.01,
) -> tuple[int | None, str]:
    verdicts = [judge(task, PARENT, item, max_drop) for item in variants]
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
    assert choose([variant(0, 10, 1.0, rmse=2.019)], task="regression")[0] == 0
    assert choose([variant(0, 10, 1.0, rmse=2.021)], task="regression")[0] is None


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

"""The typed client keeps positional lists whole and reads as the dicts it returned before
it was typed (``job.result["version"]``)."""

from __future__ import annotations

from modelkiln import Job, Version
from modelkiln.answers import Predictions


def test_a_null_probability_keeps_its_column() -> None:
    answer = Predictions.from_json(
        {
            "predictions": ["a", "c"],
            "probabilities": [[0.1, None, 0.9], [0.2, 0.3, 0.5]],
            "classes": ["a", "b", "c"],
        }
    )
    assert answer.probabilities is not None
    assert [len(row) for row in answer.probabilities] == [3, 3]


def test_the_objects_read_as_before() -> None:
    job = Job.of({"id": 1, "kind": "search", "status": "succeeded", "result": {"version": 3}})
    assert job.result is not None and job.result["version"] == 3
    version = Version.of(
        {
            "model": "m",
            "version": 1,
            "lineage": {"job_id": 4},
            "signature": {"inputs": [{"name": "a"}]},
            "metrics": {"accuracy": 0.9, "confusion_matrix": [[1]]},
        }
    )
    assert version.lineage["job_id"] == 4
    assert version.inputs[0]["name"] == "a"
    assert version.metrics["confusion_matrix"] == [[1]]


def test_a_list_of_values_with_an_entry_that_does_not_fit_keeps_its_default() -> None:
    answer = Predictions.from_json({"predictions": [1], "probabilities": [[0.1, "x", 0.9]]})
    assert answer.probabilities is None

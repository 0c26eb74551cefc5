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


def test_a_closed_pipe_ends_a_command_quietly() -> None:
    """`kiln datasets show 1 | head -2`: the reader closed the pipe, which is not an error."""
    import subprocess
    import sys

    script = (
        "import argparse, sys\n"
        "from modelkiln.commands import run\n"
        "def talk(args):\n"
        "    for n in range(100_000):\n"
        "        print('line', n)\n"
        "    return 0\n"
        "sys.exit(run(argparse.Namespace(func=talk)))\n"
    )
    command = f'{sys.executable} -c "{script}" | head -2'
    finished = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60
    )
    assert finished.stdout == "line 0\nline 1\n"
    assert finished.stderr == "" and finished.returncode == 0

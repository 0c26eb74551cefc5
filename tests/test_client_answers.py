"""The Python client reads each answer of the server once, into typed objects, tolerantly:
a field an older or newer server lacks keeps its default, keys it does not know are
ignored (and kept in ``data``), a list keeps the entries that fit; a job's progress is read
from ``done``/``total``, or from ``trials_done``/``trials_total`` on older servers. The
CLI prints from those objects what it printed from the JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx
import pytest

from modelkiln import Client, Dataset, Job, KilnApiError, Model, Version
from modelkiln import commands as client_commands
from modelkiln.answers import Predictions
from modelkiln.loop_answers import Traffic


def test_a_job_from_an_older_server_counts_with_trials_done() -> None:
    job = Job.of(
        {
            "id": 1,
            "kind": "predict",
            "status": "running",
            "progress": {"trials_done": 5, "trials_total": 9, "unit": "rows"},
        }
    )
    assert (job.done, job.total, job.trials_done, job.trials_total) == (5, 9, 5, 9)
    assert job.unit == "rows" and job.best_value is None


def test_a_job_from_a_newer_server_counts_with_done_and_total() -> None:
    progress = {"done": 3, "total": 4, "unit": "steps", "trials_done": 0, "trials_total": 0}
    job = Job.from_json({"id": 2, "kind": "compress", "status": "running", "progress": progress})
    assert (job.done, job.total, job.trials_done, job.trials_total) == (3, 4, 3, 4)
    only_new = Job.from_json(
        {"id": 2, "kind": "compress", "status": "running", "progress": {"done": 1, "total": 2}}
    )
    assert (only_new.done, only_new.total) == (1, 2)


def test_missing_and_unknown_fields_keep_defaults_and_the_whole_answer() -> None:
    answer = {"id": 3, "kind": "search", "status": "queued", "progress": None, "novel": [1]}
    job = Job.from_json(answer)
    assert (job.done, job.total, job.unit, job.model_name, job.result) == (
        0,
        0,
        "trials",
        None,
        None,
    )
    assert job.registered_versions == [] and job.serving is None and job.data == answer


def test_fields_of_another_shape_keep_their_defaults_not_fatal() -> None:
    job = Job.from_json(
        {
            "id": 4,
            "kind": "search",
            "status": "succeeded",
            "attempt": "first",  # not an int: its default
            "result": {
                "version": 2,
                "versions": [2, "x", 3],
                "metrics": {"accuracy": 0.9, "validation": {"accuracy": 1}, "n": 7},
                "plan": {"objectives": [{"metric": "accuracy", "direction": "maximize"}, {}]},
                "serving": {"alias": "production"},  # no serving_version: not a note
            },
        }
    )
    # a list of values with an entry of another shape is not read at all (positional lists
    # must not shift): the versions fall back to the one ``version`` names
    assert job.attempt is None and job.registered_versions == [2]
    assert job.result is not None and job.result.metrics == {"accuracy": 0.9, "n": 7}
    assert job.result.plan is not None and len(job.result.plan.objectives) == 1
    assert job.serving is None


def test_a_required_field_is_named_when_missing() -> None:
    with pytest.raises(ValueError, match="Job: the server's answer has no usable 'id'"):
        Job.from_json({"kind": "search", "status": "queued"})
    with pytest.raises(ValueError, match="expected a JSON object"):
        Dataset.from_json([1, 2])


def test_a_model_serves_its_newest_version_when_the_server_does_not_say() -> None:
    assert Model.from_json({"name": "m", "latest_version": 3}).serving_version == 3
    assert (
        Model.from_json({"name": "m", "latest_version": 3, "serving_version": 1}).serving_version
        == 1
    )


def test_scalars_keep_their_json_type() -> None:
    version = Version.from_json(
        {"model": "m", "version": 1, "class_labels": ["a", 0, 1.5, True], "latency_p50_ms": 2}
    )
    assert version.class_labels == ["a", 0, 1.5, True]
    assert isinstance(version.latency_p50_ms, int) and version.inputs == []
    answer = Predictions.from_json({"predictions": [[1.0, 2.0], "b"], "probabilities": None})
    assert answer.predictions == [[1.0, 2.0], "b"] and answer.probabilities is None


ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/v1/jobs/11"): {
        "id": 11,
        "kind": "search",
        "status": "succeeded",
        "dataset_id": 5,
        "model_name": "people",
        "spec": {"search": {"algorithm": "random", "pruner": "median"}},
        "progress": {
            "done": 8,
            "total": 8,
            "best_value": 0.6694,
            "best_metric": "accuracy",
            "elapsed_s": 75,
        },
        "attempt": 1,
        "max_attempts": 3,
        "worker": "w1",
        "error": None,
        "result": {
            "version": 2,
            "versions": [2, 3],
            "metrics": {"accuracy": 0.91234, "validation": {}},
            "plan": {
                "objectives": [{"metric": "accuracy", "direction": "maximize"}],
                "algorithm": "tpe",
                "parallelism": 2,
                "left_out": [{"family": "forest", "reason": "searched only when named"}],
            },
            "serving": {
                "alias": "production",
                "serving_version": 1,
                "summary": "'production' serves v1.",
            },
            "selection": {
                "families": [
                    {"family": "mlp", "trials": 5, "best": 0.66941},
                    {"family": "linear", "trials": 1, "best": None},
                ],
            },
            "phases": [
                {"name": "trials", "planned_s": 52.4, "took_s": 52.61},
                {"name": "refit on non-test rows", "planned_s": 1.2, "took_s": 0.4},
                {"name": "export and checks", "took_s": 2.0, "note": "one of two versions"},
            ],
        },
    },
    ("GET", "/v1/datasets/5"): {
        "id": 5,
        "name": "people",
        "target": "label",
        "task": "classification",
        "rows": 240,
        "profile": {
            "rows": 240,
            "columns": [
                {
                    "name": "age",
                    "type": "numeric",
                    "missing": 3,
                    "distinct": 40,
                    "min": 18,
                    "mean": 41.25,
                    "max": 90.5,
                },
                {
                    "name": "city",
                    "type": "categorical",
                    "missing": 0,
                    "distinct": 3,
                    "top": [{"value": "Oslo", "rows": 100}],
                },
                {
                    "name": "seen",
                    "type": "datetime",
                    "missing": 2,
                    "earliest": "2020-01-01",
                    "latest": "2021-01-01",
                },
                {"name": "id", "type": "ignored", "reason": "an identifier", "missing": 0},
            ],
            "target": {"classes": [{"label": "yes", "rows": 130}, {"label": 0, "rows": 110}]},
            "dropped": [{"reason": "the target is empty", "rows": 2, "first_line": 7}],
        },
    },
    ("GET", "/v1/models/people/traffic"): {
        "model": "people",
        "alias": {
            "model": "people",
            "alias": "production",
            "version": 3,
            "versions": [{"version": 3, "weight": 90}, {"version": 4, "weight": 10}],
            "shadow": 5,
        },
        "shadows": [
            {
                "primary_version": 3,
                "shadow_version": 5,
                "rows": 40,
                "agreement": 0.975,
                "mean_abs_diff": None,
                "dropped": 0,
                "failures": 1,
            }
        ],
    },
    ("GET", "/v1/models/people/drift"): [
        {
            "version": 3,
            "rows": 500,
            "threshold": 0.2,
            "drifted": ["age"],
            "ended_at": "2024-01-01T00:00:00",
            "columns": [
                {"column": "age", "psi": 0.31, "missing_share": 0.012},
                {"column": "city", "psi": None, "missing_share": 0, "unseen_share": 0.05},
            ],
        },
    ],
}

EXPECTED = {
    ("jobs", "show", "11"): """\
job           11 (search)
status        succeeded
model         people
dataset       5
progress      8/8 trials
time          01:15
best          0.6694 accuracy
attempt       1 of 3
worker        w1
algorithm     tpe
pruner        median
parallelism   2
objectives    accuracy (maximize)
registered    v2, v3
serving       'production' serves v1.
test metrics  accuracy=0.9123
families      mlp 5 complete (best 0.6694), linear 1 complete
left out      forest: searched only when named

PHASE                     PLANNED    TOOK  NOTE
trials                     52.4 s    52.6 s
refit on non-test rows      1.2 s     0.4 s
export and checks               -     2.0 s  one of two versions
""",
    ("datasets", "show", "5"): """\
dataset  5: people
rows     240
task     classification
target   label

COLUMN  TYPE         MISSING  DISTINCT  VALUES / WHY LEFT OUT
age     numeric      3        40        min 18, mean 41.25, max 90.5
city    categorical  0        3         Oslo (100)
seen    datetime     2                  2020-01-01 to 2021-01-01
id      ignored      0                  an identifier

target classes: yes (130), 0 (110)
left out: 2 rows, the target is empty (first at line 7)
""",
    ("traffic", "show", "people"): """\
people production: v3 90%, v4 10%; shadow v5
shadow v5 beside v3: 40 rows, agreement 97.50%, mean |diff| 0, dropped 0, failed 1
""",
    ("drift", "people"): """\
v3, 500 rows to 2024-01-01T00:00:00; drifted: age (PSI > 0.2)
  age: PSI 0.3100, gaps 1.2%
  city: PSI -, gaps 0.0%, unseen 5.0%
""",
}


def _answer(request: httpx.Request) -> httpx.Response:
    route = (request.method, request.url.path)
    if route == ("POST", "/v1/jobs"):
        problems = [{"loc": ["body", "search", "max_trials"], "msg": "too small"}]
        return httpx.Response(422, json={"detail": problems})
    if route == ("GET", "/v2/models/x"):
        return httpx.Response(404, json={"error": "no model 'x'"})
    if route not in ROUTES:
        return httpx.Response(404, json={"detail": "not found"})
    return httpx.Response(200, json=ROUTES[route])


@pytest.mark.parametrize("argv", list(EXPECTED), ids=" ".join)
def test_the_cli_prints_the_typed_answers_as_before(
    argv: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = httpx.MockTransport(_answer)
    monkeypatch.setattr(
        client_commands, "_client", lambda _: Client("http://kiln", "k", transport=transport)
    )
    parser = argparse.ArgumentParser()
    client_commands.add_commands(parser.add_subparsers(dest="command"))
    assert client_commands.run(parser.parse_args(argv)) == 0
    assert capsys.readouterr().out == EXPECTED[argv]


def test_refusals_carry_the_servers_message() -> None:
    with Client("http://kiln", "k", transport=httpx.MockTransport(_answer)) as kiln:
        with pytest.raises(KilnApiError) as invalid:
            kiln.submit({"kind": "search"})
        assert invalid.value.message == "body.search.max_trials: too small"
        with pytest.raises(KilnApiError) as missing:
            kiln.job(99)
        assert (missing.value.status, missing.value.message) == (404, "not found")
        with pytest.raises(KilnApiError) as v2:
            kiln._call("GET", "/v2/models/x")
        assert v2.value.message == "no model 'x'"
        traffic = kiln.traffic("people")
    assert isinstance(traffic, Traffic) and traffic.alias is not None
    assert [arm.weight for arm in traffic.alias.versions or []] == [90, 10]
    assert json.loads(json.dumps(traffic.data)) == ROUTES[("GET", "/v1/models/people/traffic")]

"""The OpenAPI document is exact: schemathesis (its engine, in process, over the ASGI app)
sends every operation valid and invalid data, and every answer must be one the document
allows: no 5xx, a documented status, content type, body and headers, a 405 whose
``Allow`` names every method of the path, data the schema allows accepted (no 4xx for a
name or a number the schema lets through) and data it refuses refused.

Two passes: one with every path parameter pinned to a row that exists (a model with a
version and an alias, a dataset, a job, a spare key), so requests reach the code behind
the 404s; one with path parameters generated from the schema (names by their published
patterns, ids by their bounds), the spare key still pinned so no pass revokes the key the
run uses. A fixed seed and a bounded number of examples per operation."""

from __future__ import annotations

import collections
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.engine import events
from schemathesis.python import asgi
from schemathesis.schemas import BaseSchema

from app.core.config import Settings
from app.core.names import RULES, free_text_pattern
from tests.helpers import blobs_csv
from tests.security.walked import register_walked

MAX_EXAMPLES = 10
SEED = 1
# A 422 whose detail is a sentence (not FastAPI's list of fields) is a rule the service
# checks past the request's shape, which no JSON Schema can carry: what is inside an
# uploaded file, how fields combine, what the registry holds now. A schema-valid request
# may break one, on these operations only; any 422 from the request models themselves
# (the list form) is still a failure, and so is any other status.
SEMANTIC_RULES = {
    "POST /v1/datasets": "the CSV's contents (header, rows, a target column in it)",
    "POST /v1/datasets/from-log": "the labels CSV and the model's request log",
    "POST /v1/jobs": "the dataset's task and columns, the server's ceilings, the registry",
    "POST /v1/jobs/predict": "the CSV's contents and the model's live versions",
    "POST /v1/models/{name}/versions": "the ONNX file's contents",
    "POST /v1/models/{name}/predict": "rows that match the version's signature",
    "POST /v1/models/{name}/explain": "rows that match the version's signature",
    "POST /v1/models/{name}:explain": "rows that match the version's signature",
    "PUT /v1/models/{name}/versions/{version}/explain/background": "2 or more rows that "
    "match the version's signature",
    "PUT /v1/models/{name}/aliases/{alias}": "weights that sum to 100, live versions",
    "POST /v1/models/{name}/aliases/{alias}/promote": "the alias's current traffic",
    "PATCH /v1/models/{name}": "at most 50 tags, counting those already set",
    "PATCH /v1/models/{name}/versions/{version}": "at most 50 tags, counting those already set",
}
# A name rule broken by a field of the request (``name: dataset name 'x\r' holds ...``) is
# the schema's to publish, whatever the operation: never a semantic rule.
_KINDS = "|".join(re.escape(rule.kind) for rule in RULES)
NAME_REFUSAL = re.compile(rf"(\w+): (?:{_KINDS}) ")
# Schemas not this module's owners' to fix: each a change described in the report of
# issue #42, forgiven here (only the failure named) until it is made.
# The Open Inference Protocol answers a request its model cannot take with 400 (its own
# status), for rules no schema carries: the body is the protocol's (JSON, or a JSON header
# and binary tensors), which the OpenAPI document leaves undescribed, as KServe does.
PROTOCOL_RULES: dict[str, int] = {
    "POST /v2/models/{name}/infer": 400,
    "POST /v2/models/{name}/versions/{version}/infer": 400,
}
# app/api/datasets.py's form fields do not publish their name rules yet (``Annotated[str,
# Form(...), DATASET_NAME.published]``, as app/api/jobs.py's ``model`` does).
NAMES_OWNED_ELSEWHERE: set[tuple[str, str]] = set()


@pytest.fixture
def pinned(app: FastAPI, settings: Settings, admin: dict, tmp_path: Path) -> dict[str, object]:
    """Rows for every path parameter: a model with a version and its production alias, a
    dataset, a queued job, a spare key. Made without the app's lifespan (schemathesis
    starts it, on its own event loop)."""
    client = TestClient(app)
    register_walked(settings, tmp_path)
    dataset = client.post(
        "/v1/datasets",
        headers=admin,
        files={"file": ("d.csv", blobs_csv(n_rows=60), "text/csv")},
        data={"target": "label"},
    )
    assert dataset.status_code == 201, dataset.text
    job = client.post(
        "/v1/jobs",
        headers=admin,
        json={
            "kind": "search",
            "dataset_id": dataset.json()["id"],
            "model_name": "searched",
            "search": {"max_trials": 1},
        },
    )
    assert job.status_code == 202, job.text
    alias = client.put("/v1/models/walked/aliases/production", headers=admin, json={"version": 1})
    assert alias.status_code == 200, alias.text
    spare = client.post("/v1/keys", headers=admin, json={"name": "spare", "scope": "read"})
    assert spare.status_code == 201, spare.text
    return {
        "name": "walked",
        "version": 1,
        "alias": "production",
        "dataset_id": dataset.json()["id"],
        "job_id": job.json()["id"],
        "key_id": spare.json()["id"],
        "part": 1,
    }


def _whole_float(problem: Any) -> bool:
    """A refusal of ``50.0`` for an integer field. JSON Schema (2020-12, OpenAPI 3.1's)
    counts a number with a zero fraction as an integer, and no keyword tells ``50.0`` from
    ``50``; the API refuses the float on purpose (issue #42: a weight of ``50.0`` is not a
    weight of ``50``, any more than ``"50"`` is), so this one refusal is not the schema's."""
    value = problem.get("input")
    return problem.get("type") == "int_type" and isinstance(value, float) and value.is_integer()


def _cross_field_rule(label: str, problem: Any) -> bool:
    """A model validator's refusal (``value_error``) on an operation with semantic rules:
    how fields combine (``methods[0][1] (quantize_dynamic): the model is already quantized
    earlier in this chain``), which no JSON Schema keyword carries either."""
    return label in SEMANTIC_RULES and problem.get("type") == "value_error"


def _forgive(context: Any, failure: Failure, case: Any, response: Any) -> bool:
    """filter_failure: keep every failure but a semantic rule's 422 (SEMANTIC_RULES), a
    refused whole float (``_whole_float``), the protocol's own 400s (PROTOCOL_RULES) and
    a PATCH of an archived version after its DELETE (UseAfterFree)."""
    label = case.operation.label
    if failure.__class__.__name__ == "UseAfterFree" and case.method == "PATCH":
        # DELETE of a version archives it: lineage keeps it readable and taggable (its
        # status says archived); only its artifact is ever deleted, by its own route.
        return False
    if failure.__class__.__name__ != "RejectedPositiveData":
        return True
    if response.status_code == PROTOCOL_RULES.get(label):
        return False
    if response.status_code != 422:
        return True
    try:
        detail = response.json().get("detail")
    except ValueError:
        return True
    if isinstance(detail, list):
        kept = not (
            detail
            and all(
                _whole_float(problem) or _cross_field_rule(label, problem) for problem in detail
            )
        )
    elif (name := NAME_REFUSAL.match(str(detail))) is not None:
        kept = (label, name[1]) not in NAMES_OWNED_ELSEWHERE
    else:
        kept = label not in SEMANTIC_RULES
    if not kept:
        FORGIVEN[f"{label} {str(detail)[:150]}"] += 1
    return kept


FORGIVEN: collections.Counter[str] = collections.Counter()


def _run(
    app: FastAPI, key: str, parameters: dict[str, object], *, only_templated: bool = False
) -> tuple[list[str], int]:
    """One schemathesis run over every operation (``only_templated``: those with a path
    parameter): the failures, described, and how many checks ran."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {key}"},
            "generation": {"max-examples": MAX_EXAMPLES},
            "parameters": {f"path.{name}": value for name, value in parameters.items()},
        }
    )
    schema: BaseSchema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    if only_templated:
        schema = schema.include(path_regex=r"\{")
    schema.hook("filter_failure")(_forgive)
    failures: list[str] = []
    checks = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            failures.append(f"error on {event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal error: {event.exception!r}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        for case_id, results in recorder.checks.items():
            checks += len(results)
            for result in results:
                if result.failure_info is None:
                    continue
                case = recorder.cases[case_id].value
                answer = recorder.interactions.get(case_id)
                response = answer.response if answer is not None else None
                failures.append(
                    f"{result.name} on {recorder.label}: {case.method} {case.formatted_path}"
                    f" query={case.query} body={str(case.body)[:200]} -> "
                    f"{response.status_code if response else '-'} "
                    f"{(response.content[:300] if response else b'')!r}\n    "
                    + str(result.failure_info.failure).replace("\n", " | ")[:400]
                )
    return failures, checks


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Schemathesis keeps a cache in the working directory: a temporary one here. Its
    lifespans (one per app, on its own event loop) end with the test."""
    monkeypatch.chdir(tmp_path)
    yield
    asgi.shutdown_lifespans()
    shutil.rmtree(tmp_path / ".schemathesis", ignore_errors=True)


def test_every_operation_answers_as_the_schema_says(
    app: FastAPI, keys: dict[str, str], pinned: dict[str, object], isolated: None
) -> None:
    started = time.monotonic()
    failures, checks = _run(app, keys["admin"], pinned)
    generated, more = _run(app, keys["admin"], {"key_id": pinned["key_id"]}, only_templated=True)
    for what, count in FORGIVEN.most_common():
        print(count, what)
    elapsed = time.monotonic() - started
    print(f"schemathesis: {checks + more} checks in {elapsed:.0f} s")  # with pytest -s
    counted = collections.Counter(line.split(":", 1)[0] for line in failures + generated)
    assert not failures + generated, f"{counted}\n" + "\n".join(failures + generated)


@fuzz_settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_each_published_name_pattern_is_the_rule(value: str) -> None:
    """A value matches a rule's published pattern and length exactly when the rule accepts
    it (the pattern is built from the same Unicode tables; lone surrogates, which no JSON
    Schema regex names, are refused by the rule and left out of the pattern)."""
    for rule in RULES:
        if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
            continue
        published = re.fullmatch(rule.json_pattern, value) is not None
        published = published and 1 <= len(value) <= rule.max_length
        assert published == rule.is_valid(value), (rule.kind, value)


def test_the_free_text_pattern_refuses_what_the_rule_refuses() -> None:
    pattern = re.compile(free_text_pattern())
    for value in ("a b", "é", "名前", "a\u00a0b"):
        assert pattern.fullmatch(value), value
    for value in (" a", "a ", "a\u200bb", "a\nb", "\u3000a", "a\u2028", "\U000f0000"):
        assert not pattern.fullmatch(value), value

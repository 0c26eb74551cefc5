"""A column of numbers with a few words among them (openintro's ``yrbss``: ``grade`` is 9 to
12, 'other' in 16 of 10,187 cells) is uploaded as numbers, its words read as gaps; the
profile says so, with the counts and why; the served model reads a word sent for it the same
way. Every fix a message suggests for the ``columns`` field is JSON that, sent back, is
accepted."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.contracts.signature import TensorSpec
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import InvalidInput
from app.jobs.runner import run_job
from app.kinds import JOB_KINDS
from app.serving.records import parse_records
from app.tables import Job
from tests.api.test_datasets import upload
from tests.helpers import csv_bytes

HEADER = ["age", "grade", "hours_tv", "label"]


def school_rows(count: int = 400, seed: int = 5) -> list[list[Any]]:
    """yrbss in small: the label follows the grade; 2% of the grades are 'other', some NA."""
    rng = np.random.default_rng(seed)
    rows: list[list[Any]] = []
    for index in range(count):
        grade = int(rng.integers(9, 13))
        cell: str = str(grade)
        if index % 50 == 7:
            cell = "other"
        elif index % 40 == 3:
            cell = "NA"
        rows.append(
            [
                f"{14 + grade - 9 + rng.normal(0, 0.5):.1f}",
                cell,
                str(int(rng.integers(0, 5))),
                "senior" if grade >= 11 else "junior",
            ]
        )
    return rows


def suggested_columns(message: str) -> str:
    """The ``columns`` value a message suggests, exactly as written (it must be JSON)."""
    found = re.search(r"columns=", message)
    assert found, message
    value, end = json.JSONDecoder().raw_decode(message, found.end())
    assert isinstance(value, dict), message
    return message[found.end() : end]


def test_numbers_with_a_few_words_are_numeric_and_the_profile_says_why(
    client: TestClient, admin: dict
) -> None:
    rows = school_rows()
    status, body = upload(client, admin, csv_bytes(HEADER, rows))
    assert status == 201, body
    grade = next(c for c in body["profile"]["columns"] if c["name"] == "grade")
    words = sum(row[1] == "other" for row in rows)
    gaps = sum(row[1] == "NA" for row in rows)
    assert (grade["type"], grade["words"], grade["missing"]) == ("numeric", words, words + gaps)
    assert grade["top"] == [{"value": "other", "rows": words}]
    assert (grade["min"], grade["max"]) == (9.0, 12.0)
    filled = len(rows) - gaps
    assert grade["reason"].startswith(
        f"numbers with {words} cells of words in {filled} filled ({words / filled:.2%}): "
        f"'other' ({words}), read as gaps"
    )
    assert "at least 95% of the filled cells are numbers" in grade["reason"]
    # The features: the grade (the median where a word or a gap was) and its missing flag.
    assert body["feature_names"] == ["age", "grade", "grade:missing", "hours_tv"]
    # The reason's own fix pastes: the grades, 'other' among them, as categories.
    fix = suggested_columns(grade["reason"])
    status, again = upload(client, admin, csv_bytes(HEADER, rows), columns=fix)
    assert status == 201, again
    grade = next(c for c in again["profile"]["columns"] if c["name"] == "grade")
    assert grade["type"] == "categorical" and {"value": "other", "rows": words} in grade["top"]


def test_more_than_a_few_words_make_a_categorical_column(client: TestClient, admin: dict) -> None:
    rows = [[str(i % 7) if i % 10 else "unknown", "ab"[i % 2]] for i in range(60)]  # 10% words
    status, body = upload(client, admin, csv_bytes(["x", "label"], rows))
    assert status == 201, body
    [column] = body["profile"]["columns"]
    assert (column["type"], column["words"]) == ("categorical", None)


NAMES = ["grade", 'grade "9-12"', "back\\slash", "klasse ü", "{brace}"]


def _refusal_or_reason(
    client: TestClient, admin: dict, name: str, case: str
) -> tuple[bytes, str, str]:
    """(file, the message that suggests a fix, the type the fix gives) for ``case``."""
    if case == "text forced numeric":
        texts = [[word, "ab"[i % 2]] for i, word in enumerate("uvwxyz")] * 5  # 3 per class
        content = csv_bytes([name, "label"], texts)
        status, body = upload(client, admin, content, columns=json.dumps({name: "numeric"}))
        assert status == 422, body
        return content, body["detail"], "categorical"
    if case == "words among numbers":
        words = [[str(i % 9) if i % 40 else "other", "ab"[i % 2]] for i in range(80)]
        content = csv_bytes([name, "label"], words)
        kind = "categorical"
    elif case in ("an ID", "row numbers"):
        first, step = (7, 3) if case == "an ID" else (1, 1)
        rows = [[first + step * i, i % 5, "ab"[i % 2]] for i in range(60)]
        content = csv_bytes([name, "x", "label"], rows)
        kind = "numeric"
    else:  # free text
        content = csv_bytes(
            [name, "x", "label"], [[f"w{i}", i % 5, "ab"[i % 2]] for i in range(60)]
        )
        kind = "categorical"
    status, body = upload(client, admin, content)
    assert status == 201, body
    column = next(c for c in body["profile"]["columns"] if c["name"] == name)
    return content, column["reason"], kind


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "case", ["text forced numeric", "words among numbers", "an ID", "row numbers", "text"]
)
def test_every_suggested_columns_fix_pastes_as_json_and_is_accepted(
    client: TestClient, admin: dict, name: str, case: str
) -> None:
    content, message, kind = _refusal_or_reason(client, admin, name, case)
    fix = suggested_columns(message)
    assert json.loads(fix) == {name: kind}
    status, body = upload(client, admin, content, columns=fix)
    assert status == 201, body
    column = next(c for c in body["profile"]["columns"] if c["name"] == name)
    assert column["type"] == kind


def test_the_output_column_fix_pastes(client: TestClient, admin: dict) -> None:
    content = csv_bytes(
        ["output", "x", "label"], [[f"w{i % 3}", i, "ab"[i % 2]] for i in range(30)]
    )
    status, body = upload(client, admin, content)
    assert status == 422 and "the model's output" in body["detail"], body
    fix = suggested_columns(body["detail"])
    status, body = upload(client, admin, content, columns=fix)
    assert status == 201, body
    assert body["profile"]["columns"][0]["type"] == "ignored"


def test_a_column_forced_numeric_with_many_words_is_refused_with_the_counts(
    client: TestClient, admin: dict
) -> None:
    rows = [[str(i) if i % 5 else "n/k", "ab"[i % 2]] for i in range(40)]  # 20% words
    status, body = upload(
        client, admin, csv_bytes(["x", "label"], rows), columns='{"x": "numeric"}'
    )
    assert status == 422
    assert body["detail"] == (
        "column 'x' is not numeric: 'n/k' at line 2 is one of 8 cells of words in 40 filled "
        '(20%; at most 5% are read as gaps); send columns={"x": "categorical"} to use it as '
        "categories"
    )


def test_records_read_text_in_such_a_column_as_the_upload_did() -> None:
    lenient = TensorSpec(name="grade", datatype="FP32", shape=[-1, 1], kind="numeric",
                         allows_missing=True, words_as_gaps=True)  # fmt: skip
    strict = TensorSpec(name="age", datatype="FP32", shape=[-1, 1], kind="numeric",
                        allows_missing=True)  # fmt: skip
    records = [
        {"grade": "other", "age": 15},
        {"grade": " 10 ", "age": None},
        {"grade": 11, "age": 16.5},
        {"grade": "never seen", "age": 1},
        {"grade": None, "age": 2},
    ]
    feeds = parse_records({"inputs": records}, (lenient, strict), 10)
    grade = feeds["grade"].reshape(-1).tolist()
    assert math.isnan(grade[0]) and grade[1:3] == [10.0, 11.0] and math.isnan(grade[3])
    assert math.isnan(grade[4])
    with pytest.raises(InvalidInput, match=r"inputs\[0\]\['age'\] must be a number or null"):
        parse_records({"inputs": [{"grade": 9, "age": "other"}]}, (lenient, strict), 10)
    with pytest.raises(InvalidInput, match="outside the float32 range"):
        parse_records({"inputs": [{"grade": "1e39", "age": 1}]}, (lenient, strict), 10)


def test_a_search_on_such_a_table_predicts_a_record_holding_the_word(
    client: TestClient, admin: dict, settings: Settings, tmp_path: Path
) -> None:
    status, body = upload(client, admin, csv_bytes(HEADER, school_rows()))
    assert status == 201, body
    search = {"max_trials": 1, "max_epochs": 5, "validation": "holdout", "families": ["mlp"]}
    answer = client.post(
        "/v1/jobs",
        headers=admin,
        json={"kind": "search", "dataset_id": body["id"], "model_name": "school", "search": search},
    )
    assert answer.status_code == 202, answer.text
    job_id = int(answer.json()["id"])
    run_job(settings, job_id, JOB_KINDS["search"].load_handler())
    with session_scope(settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.error is None, job.error if job else None
    version = client.get("/v1/models/school/versions/1", headers=admin).json()
    grade = next(spec for spec in version["signature"]["inputs"] if spec["name"] == "grade")
    assert (grade["datatype"], grade["words_as_gaps"]) == ("FP32", True)
    records = [
        {"age": 15.2, "grade": "other", "hours_tv": 2},
        {"age": 15.2, "grade": None, "hours_tv": 2},
        {"age": 15.2, "grade": "10", "hours_tv": 2},
        {"age": 15.2, "grade": 10, "hours_tv": 2},
    ]
    answer = client.post("/v1/models/school/predict", headers=admin, json={"inputs": records})
    assert answer.status_code == 200, answer.text
    probabilities = answer.json()["probabilities"]
    assert probabilities[0] == probabilities[1]  # a word is a gap, as at upload
    assert probabilities[2] == probabilities[3]  # a number written as text is that number

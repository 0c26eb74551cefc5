"""POST/GET /v1/datasets, including every rejected upload."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.core.config import Settings
from app.main import create_app
from tests.conftest import make_settings
from tests.helpers import blobs_csv, csv_bytes


def upload(
    client: TestClient, headers: dict[str, str], content: bytes, **form: str
) -> tuple[int, dict]:
    response = client.post(
        "/v1/datasets",
        headers=headers,
        files={"file": ("data.csv", content, "text/csv")},
        data={"target": "label", **form},
    )
    return response.status_code, response.json()


def test_upload_returns_summary_and_reads_back(client: TestClient, admin: dict) -> None:
    status, body = upload(client, admin, blobs_csv(labels=("cat", "dog", "eel")), name="pets")
    assert status == 201
    assert body["rows"] == 60
    assert body["task"] == "classification"
    assert body["class_labels"] == ["cat", "dog", "eel"]
    assert body["feature_names"] == ["f0", "f1", "f2", "f3"]
    assert len(body["sha256"]) == 64
    assert client.get(f"/v1/datasets/{body['id']}", headers=admin).json() == body
    listing = client.get("/v1/datasets", headers=admin).json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == body["id"]


def test_numeric_labels_and_regression_are_inferred(client: TestClient, admin: dict) -> None:
    _, classes = upload(client, admin, blobs_csv(labels=(3, 1)))
    assert classes["task"] == "classification" and classes["class_labels"] == [1, 3]
    rows = [[i, i * 0.5, i * 1.37] for i in range(40)]
    _, regression = upload(client, admin, csv_bytes(["a", "b", "label"], rows))
    assert regression["task"] == "regression" and regression["class_labels"] is None


def test_input_shape_is_kept(client: TestClient, admin: dict) -> None:
    status, body = upload(client, admin, blobs_csv(n_features=4), input_shape="1,2,2")
    assert status == 201 and body["input_shape"] == [1, 2, 2]


BAD_UPLOADS = [
    ("empty file", b"", {}, 422, "file is empty"),
    ("no header", b"1,2,3\n4,5,6\n", {}, 422, "no header row"),
    (
        "unknown target",
        blobs_csv(),
        {"target": "species"},
        422,
        "target column 'species' not in CSV header: ['f0', 'f1', 'f2', 'f3', 'label']",
    ),
    (
        "words in a column forced numeric",
        csv_bytes(["x", "label"], [[i, "ab"[i % 2]] for i in range(30)] + [["abc", "b"]] * 2),
        {"columns": '{"x": "numeric"}'},
        422,
        "column 'x' is not numeric: 'abc' at line 32 is one of 2 cells of words in 32",
    ),
    (
        "text forced numeric",
        csv_bytes(["x", "label"], [["u", "a"], ["v", "b"]] * 6),
        {"columns": '{"x": "numeric"}'},
        422,
        "column 'x' is not numeric: 'u' at line 2",
    ),
    (
        "text forced datetime",
        csv_bytes(["x", "label"], [["u", "a"], ["v", "b"]] * 6),
        {"columns": '{"x": "datetime"}'},
        422,
        "column 'x' is not an ISO date: 'u' at line 2",
    ),
    (
        "columns not JSON",
        blobs_csv(),
        {"columns": "{zip: categorical"},
        422,
        "columns: not valid JSON",
    ),
    (
        "columns not an object",
        blobs_csv(),
        {"columns": "[1]"},
        422,
        "columns: expected a JSON object",
    ),
    (
        "columns names no column",
        blobs_csv(),
        {"columns": '{"zip": "categorical"}'},
        422,
        "columns: 'zip' is not a column of the CSV",
    ),
    (
        "columns unknown type",
        blobs_csv(),
        {"columns": '{"f0": "text"}'},
        422,
        "columns: type of 'f0' must be one of ['numeric', 'categorical', 'datetime', 'ignore']",
    ),
    (
        "columns retypes the target",
        blobs_csv(),
        {"columns": '{"label": "numeric"}'},
        422,
        "columns: 'label' is the target",
    ),
    (
        "every feature ignored",
        blobs_csv(n_features=1),
        {"columns": '{"f0": "ignore"}'},
        422,
        "no feature column can be used ('f0': ignored as asked)",
    ),
    (
        "a column named output",
        csv_bytes(["output", "y", "label"], [[1, "u", "a"], [2, "v", "b"]] * 6),
        {},
        422,
        "column 'output' has the name of the model's output tensor",
    ),
    (
        "input_shape with text",
        csv_bytes(["x", "y", "label"], [[1, "u", "a"], [2, "v", "b"]] * 6),
        {"input_shape": "2"},
        422,
        "input_shape is for tables of numbers without gaps",
    ),
    (
        "single class",
        csv_bytes(["x", "label"], [[i, "a"] for i in range(20)]),
        {"task": "classification"},
        422,
        "single class ('a')",
    ),
    (
        "too few rows",
        csv_bytes(["x", "label"], [[i, i % 2] for i in range(6)]),
        {},
        422,
        "dataset has 6 rows; at least 10 are needed",
    ),
    (
        "class too small for splits",
        csv_bytes(["x", "label"], [[i, "a"] for i in range(20)] + [[1, "b"], [2, "b"]]),
        {},
        422,
        "class 'b' has 2 row(s); each class needs at least 3",
    ),
    (
        "input_shape mismatch",
        blobs_csv(n_features=4),
        {"input_shape": "1,8,8"},
        422,
        "input_shape '1,8,8' has 64 elements but the CSV has 4 feature columns",
    ),
    (
        "malformed input_shape",
        blobs_csv(),
        {"input_shape": "two,by,two"},
        422,
        "must be comma-separated positive integers",
    ),
    ("ragged row", b"a,b,label\n1,2,x\n1,2\n", {}, 422, "line 3 has 2 fields; the header has 3"),
    ("not UTF-8", b"a,label\n\xff\xfe,1\n", {}, 422, "not UTF-8 text"),
    ("duplicate header", b"a,a,label\n1,2,x\n", {}, 422, "header repeats column names: ['a']"),
    (
        "infinite feature",
        csv_bytes(["x", "label"], [[1, "a"]] * 6 + [["inf", "b"]] * 6),
        {},
        422,
        "non-finite value 'inf'",
    ),
    (
        "regression on text target",
        blobs_csv(),
        {"task": "regression"},
        422,
        "must be numeric for regression",
    ),
]


@pytest.mark.parametrize(
    ("content", "form", "status", "message"),
    [case[1:] for case in BAD_UPLOADS],
    ids=[case[0] for case in BAD_UPLOADS],
)
def test_bad_upload_is_rejected_and_nothing_is_lost(
    client: TestClient, admin: dict, content: bytes, form: dict, status: int, message: str
) -> None:
    _, kept = upload(client, admin, blobs_csv())
    got_status, body = upload(client, admin, content, **form)
    assert got_status == status
    assert message in body["detail"]
    listing = client.get("/v1/datasets", headers=admin).json()
    assert [item["id"] for item in listing["items"]] == [kept["id"]]
    assert client.get(f"/v1/datasets/{kept['id']}", headers=admin).json() == kept


def test_unknown_task_names_the_allowed_values(client: TestClient, admin: dict) -> None:
    status, body = upload(client, admin, blobs_csv(), task="clustering")
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "task"]
    assert "classification" in body["detail"][0]["msg"]


def test_missing_file_field_is_named(client: TestClient, admin: dict) -> None:
    response = client.post("/v1/datasets", headers=admin, data={"target": "label"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


@pytest.fixture
def small_limit_client(settings: Settings, admin: dict) -> Iterator[TestClient]:
    limited = make_settings(settings.data_dir, settings.database_url, max_upload_mb=0.01)
    with TestClient(create_app(limited, run_reaper=False)) as test_client:
        yield test_client


def test_upload_over_limit_is_413_by_declared_length(
    small_limit_client: TestClient, admin: dict
) -> None:
    status, body = upload(small_limit_client, admin, blobs_csv(n_rows=600))
    assert status == 413
    assert "KILN_MAX_UPLOAD_MB" in body["detail"]


def test_upload_over_limit_is_413_while_streaming(
    small_limit_client: TestClient, admin: dict
) -> None:
    """No Content-Length: the body is refused once the received bytes pass the limit."""
    sent: list[int] = []
    boundary = "kilnboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="target"\r\n\r\nlabel\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()

    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(1000):  # 1000 x 1 KiB, far past the 10 KiB limit
            sent.append(1)
            yield b"1,2,3,4\n" * 128
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small_limit_client.post(
        "/v1/datasets",
        headers={**admin, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        content=chunks(),
    )
    assert response.status_code == 413
    assert "larger than the limit" in response.json()["detail"]
    assert small_limit_client.get("/v1/datasets", headers=admin).json()["total"] == 0


def test_unknown_dataset_is_404(client: TestClient, admin: dict) -> None:
    response = client.get("/v1/datasets/999999", headers=admin)
    assert response.status_code == 404
    assert response.json() == {"detail": "dataset 999999 not found"}


def test_pagination_is_newest_first(client: TestClient, admin: dict) -> None:
    ids = [upload(client, admin, blobs_csv(seed=seed))[1]["id"] for seed in range(3)]
    page = client.get("/v1/datasets?limit=2&offset=0", headers=admin).json()
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    assert page["total"] == 3
    assert client.get("/v1/datasets?limit=0", headers=admin).status_code == 422


def test_batch_prediction_upload_over_limit_is_413_and_queues_nothing(
    small_limit_client: TestClient, admin: dict
) -> None:
    response = small_limit_client.post(
        "/v1/jobs/predict",
        headers=admin,
        data={"model": "flowers"},
        files={"file": ("rows.csv", blobs_csv(n_rows=600))},
    )
    assert response.status_code == 413
    assert "KILN_MAX_UPLOAD_MB" in response.json()["detail"]
    assert small_limit_client.get("/v1/jobs", headers=admin).json()["total"] == 0

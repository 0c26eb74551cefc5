"""Sampled request logs through the real gateway app: what is kept (the version, latency,
inputs and output; never the key), the per-model share, the bounds in bytes, and a dataset
made from the log and a labels CSV, with the refusals; each request under an id of the
gateway's, a client's id sent twice counted as ambiguous."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.api.state import gateway_of
from app.core.config import Settings
from app.main import create_app
from app.serving.request_log import ROW_GROUP_ROWS, new_request_id
from app.storage import get_store
from tests.conftest import make_settings, register

PREDICT = "/v1/models/flowers/predict"


def logging_app(settings: Settings, **overrides: object) -> FastAPI:
    values = {"log_sample": 1.0, **overrides}
    return create_app(
        make_settings(settings.data_dir, settings.database_url, **values), run_reaper=False
    )


@pytest.fixture
def logged(settings: Settings, classifier_onnx: Path) -> Iterator[TestClient]:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    with TestClient(logging_app(settings), raise_server_exceptions=False) as client:
        yield client


def flush(client: TestClient) -> None:
    gateway_of(client.app).monitors.flush()  # type: ignore[arg-type]


def parts(client: TestClient, admin: dict[str, str]) -> list[dict]:
    response = client.get("/v1/models/flowers/logs", headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_requests_are_logged_with_version_latency_and_output_but_never_the_key(
    logged: TestClient, admin: dict[str, str]
) -> None:
    rows = {"inputs": [[6.0, 6.0, 6.0, 6.0], [0.0, 0.0, 0.0, 0.0]]}
    mine = logged.post(PREDICT, headers={**admin, "x-request-id": "order-17"}, json=rows)
    assert mine.headers["x-request-id"] == "order-17" and mine.headers["x-kiln-version"] == "1"
    theirs = logged.post(PREDICT, headers=admin, json={"inputs": [[1.0, 2.0, 3.0, 4.0]]})
    generated = theirs.headers["x-request-id"]
    assert len(generated) == 20  # this process's 12-digit prefix and a counter
    flush(logged)
    [part] = parts(logged, admin)
    assert part["rows"] == 3 and part["raw_bytes"] > 3 * len('{"input":[6.0,6.0,6.0,6.0]}')
    download = logged.get(f"/v1/models/flowers/logs/{part['id']}", headers=admin)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/vnd.apache.parquet"
    secret = admin["Authorization"].removeprefix("Bearer ")
    assert secret.encode() not in download.content and b"Bearer" not in download.content
    table = pq.read_table(io.BytesIO(download.content)).to_pylist()
    first = next(r for r in table if r["client_request_id"] == "order-17" and r["row"] == 0)
    assert first["version"] == 1 and first["protocol"] == "v1" and first["latency_ms"] > 0
    assert first["inputs"] == '{"input":[6.0,6.0,6.0,6.0]}'
    assert first["prediction"] == "c" and len(first["output"]) == 3
    # Each request under an id of the gateway's; the client's own beside it, when it sent one.
    ids = {(r["request_id"], r["client_request_id"]) for r in table}
    assert len(ids) == 2 and (generated, None) in ids
    assert all(len(request) == 20 and request != "order-17" for request, _ in ids)


def test_a_part_is_written_in_row_groups_and_records_its_uncompressed_size(
    logged: TestClient, admin: dict[str, str]
) -> None:
    rows = ROW_GROUP_ROWS + 500
    response = logged.post(PREDICT, headers=admin, json={"inputs": [[6.0, 6.0, 6.0, 6.0]] * rows})
    assert response.status_code == 200, response.text
    flush(logged)
    [part] = parts(logged, admin)
    assert part["rows"] == rows
    assert part["raw_bytes"] > part["size_bytes"]  # the same row, over and over: it compresses
    download = logged.get(f"/v1/models/flowers/logs/{part['id']}", headers=admin)
    metadata = pq.ParquetFile(io.BytesIO(download.content)).metadata  # a reader streams it
    groups = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert groups == [ROW_GROUP_ROWS, 500]


def test_the_model_decides_its_own_share(
    settings: Settings, classifier_onnx: Path, admin: dict[str, str]
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    app = logging_app(settings, log_sample=0.0)
    with TestClient(app, raise_server_exceptions=False) as client:
        row = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}
        assert "x-request-id" not in client.post(PREDICT, headers=admin, json=row).headers
        flush(client)
        assert parts(client, admin) == []
        options = client.put("/v1/models/flowers/serving", headers=admin, json={"log_sample": 1.0})
        assert options.status_code == 200 and options.json()["serving"]["log_sample"] == 1.0
        for _ in range(5):
            client.post(PREDICT, headers=admin, json=row)
        flush(client)
        assert sum(part["rows"] for part in parts(client, admin)) == 5
        refused = client.put("/v1/models/flowers/serving", headers=admin, json={"log_sample": 2})
        assert refused.status_code == 422 and "log_sample" in str(refused.json()["detail"])


def test_the_log_is_bounded_in_bytes(
    settings: Settings, classifier_onnx: Path, admin: dict[str, str]
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    app = logging_app(settings, log_max_mb=0.01, log_buffer_mb=0.002)
    with TestClient(app, raise_server_exceptions=False) as client:
        row = {"inputs": [[6.0, 6.0, 6.0, 6.0]]}
        for _ in range(6):
            for _ in range(5):
                client.post(PREDICT, headers=admin, json=row)
            flush(client)
        kept = parts(client, admin)
        counted = sum(max(part["raw_bytes"], part["size_bytes"]) for part in kept)
        assert 0 < counted <= 0.01 * 1048576
        assert len(kept) < 6  # the oldest went
        store = get_store(settings)
        assert len(list((store.root / "request-logs" / "flowers").iterdir())) == len(kept)  # type: ignore[attr-defined]
        for _ in range(400):  # more than the 2 KB buffer holds between flushes
            client.post(PREDICT, headers=admin, json=row)
        assert gateway_of(app).monitors.log.dropped > 0


def labels_csv(lines: list[str] | bytes) -> dict:
    data = lines if isinstance(lines, bytes) else "\n".join(lines).encode()
    return {"labels": ("labels.csv", data, "text/csv")}


def log_requests(client: TestClient, admin: dict[str, str], ids: list[str | None]) -> list[str]:
    """One request per id (None: none sent), inputs of four values cycling through six
    rows (each label of ``labelled`` on three of them); the x-request-id each answer
    carried."""
    carried = []
    for index, request_id in enumerate(ids):
        value = float(index % 6)
        headers = admin if request_id is None else {**admin, "x-request-id": request_id}
        answer = client.post(
            PREDICT, headers=headers, json={"inputs": [[value, value + 1, value * 2, 1.0]]}
        )
        assert answer.status_code == 200, answer.text
        carried.append(answer.headers["x-request-id"])
    flush(client)
    return carried


def from_log(client: TestClient, headers: dict[str, str], lines: list[str], **fields: str) -> dict:
    made = client.post(
        "/v1/datasets/from-log",
        headers=headers,
        data={"model": "flowers", "target": "label", **fields},
        files=labels_csv(lines),
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def labelled(ids: list[str]) -> list[str]:
    return ["request_id,label", *(f"{id_},{'yes' if i % 2 else 'no'}" for i, id_ in enumerate(ids))]


def test_a_dataset_from_the_log_and_a_labels_csv(logged: TestClient, admin: dict[str, str]) -> None:
    for index in range(40):
        value = float(index % 6)
        logged.post(
            PREDICT,
            headers={**admin, "x-request-id": f"r{index}"},
            json={"inputs": [[value, value + 1, value * 2, 1.0]]},
        )
    flush(logged)
    lines = ["request_id,label", *(f"r{i},{'yes' if i % 2 else 'no'}" for i in range(40))]
    lines += ["never-logged,yes", "r5,"]  # one unknown; a blank label leaves r5's as it was
    made = logged.post(
        "/v1/datasets/from-log",
        headers=admin,
        data={"model": "flowers", "target": "label"},
        files=labels_csv(lines),
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["joined"] == 40 and body["unmatched"] == 1 and body["ambiguous"] == 0
    assert body["duplicates"] == 34  # the inputs cycle through six rows
    assert body["rows"] == 40 and body["target"] == "label"
    assert body["feature_names"] == ["input_0", "input_1", "input_2", "input_3"]
    assert body["class_labels"] == ["no", "yes"]


@pytest.mark.parametrize(
    ("fields", "lines", "message"),
    [
        ({"model": "flowers"}, ["id,label", "r1,yes"], "column 'request_id' not in the CSV header"),
        ({"model": "flowers"}, ["request_id,answer", "r1,yes"], "column 'label' not in"),
        ({"model": "flowers"}, ["request_id,label", "nope,yes"], "none of the 1 labelled"),
        ({"model": "flowers"}, ["request_id,row,label", "r1,x,yes"], "row 'x' is not a whole"),
        ({"model": "flowers"}, ["request_id,label", "r1,"], "no labelled row"),
        ({"model": "ghost"}, ["request_id,label", "r1,yes"], "model 'ghost' not found"),
        ({"model": "flowers", "target": "bad\u0000name"}, ["request_id,label"], "target"),
        # issue #42: each of these was a 500, or passed unnoticed
        (
            {"model": "flowers"},
            ["request_id,row,label", "r1,inf,yes"],
            "line 2: row 'inf' is not a whole number from 0 to 2147483647",
        ),
        (
            {"model": "flowers"},
            ["request_id,label,request_id", "r1,yes,r2"],
            "column 'request_id' appears 2 times in the CSV header (columns 1, 3)",
        ),
        (
            {"model": "flowers"},
            ["request_id,row,label,row", "r1,0,yes,0"],
            "column 'row' appears 2 times",
        ),
        (
            {"model": "flowers"},
            ["request_id,label,label", "r1,yes,no"],
            "column 'label' appears 2 times",
        ),
        ({"model": "flowers"}, ["request_id,row,label", "r1,-1,yes"], "line 2: row '-1' is not"),
        (
            {"model": "flowers"},
            ["request_id,row,label", "r1,0,no", "r1,99999999999999999999999999,yes"],
            "line 3: row '99999999999999999999999999' is not a whole number",
        ),
        ({"model": "flowers"}, ["request_id,row,label", "r1,nan,yes"], "line 2: row 'nan'"),
        ({"model": "flowers"}, ["request_id,row,label", "r1,,yes"], "line 2: row '' is not"),
        ({"model": "flowers"}, ["request_id,row,label", "r1,1.5,yes"], "line 2: row '1.5'"),
        ({"model": "flowers"}, b"", "labels: the CSV is empty"),
        ({"model": "flowers"}, b"\xef\xbb\xbf", "labels: the CSV is empty"),
        ({"model": "flowers"}, ["", "r1,yes"], "the CSV's first line is empty"),
        (
            {"model": "flowers", "target": "request_id"},
            ["request_id,label", "r1,yes"],
            "target: 'request_id' is a column the labels are matched by",
        ),
        (
            {"model": "flowers", "target": "row"},
            ["request_id,row", "r1,0"],
            "target: 'row' is a column the labels are matched by",
        ),
        ({"model": "flowers"}, ["request_id,label", "r1,yes,extra"], "line 2: 3 cells, the"),
        ({"model": "flowers"}, ["request_id,label", "r1"], "line 2: 1 cells, the header has 2"),
        ({"model": "flowers"}, ["request_id,label", ",yes"], "line 2: request_id is empty"),
        (
            {"model": "flowers"},
            ["request_id,label", "r1,yes", "", "r1,no"],
            "line 4: request 'r1' row 0 is labelled already on line 2",
        ),
        (
            {"model": "flowers"},
            ["request_id,label", 'r1,"two', 'lines"', "r1,no"],
            "line 4: request 'r1' row 0 is labelled already on line 2",
        ),
        ({"model": "flowers"}, b"request_id,label\nr1,\xffyes\n", "line 2: not UTF-8"),
        (
            {"model": "flowers"},
            b"request_id,label\n" + b"".join(b"r%d,yes\n" % i for i in range(20_000)) + b"x,\xe9\n",
            "line 20002: not UTF-8",
        ),
        (
            {"model": "flowers"},
            b'request_id,label\nr1,"' + b"x" * 200_000 + b'"\n',
            "line 2: not a readable CSV (field larger than field limit",
        ),
    ],
)
def test_from_log_refusals(
    logged: TestClient,
    admin: dict[str, str],
    fields: dict[str, str],
    lines: list[str],
    message: str,
) -> None:
    logged.post(PREDICT, headers={**admin, "x-request-id": "r1"}, json={"inputs": [[1.0] * 4]})
    flush(logged)
    response = logged.post(
        "/v1/datasets/from-log", headers=admin, data=fields, files=labels_csv(lines)
    )
    assert 400 <= response.status_code < 500, response.text
    assert message in str(response.json()["detail"])
    assert logged.get("/v1/datasets", headers=admin).json()["total"] == 0  # nothing made


def test_labels_are_text_and_a_bom_is_not_a_column(
    logged: TestClient, admin: dict[str, str]
) -> None:
    """Ids of digits keep their leading zeros (a type guess made '007' the number 7, and
    nothing matched); a spreadsheet's BOM and its '0.0' row numbers are read as meant."""
    ids = [f"{index:03d}" for index in range(40)]
    log_requests(logged, admin, ids)  # type: ignore[arg-type]
    lines = ["request_id,row,label", *(f"{i},0.0,{'yes' if int(i) % 2 else 'no'}" for i in ids)]
    lines[0] = "\ufeff" + lines[0]
    body = from_log(logged, admin, lines)
    assert (body["joined"], body["unmatched"], body["ambiguous"]) == (40, 0, 0)


def test_a_refusal_of_the_joined_rows_names_the_labels_line(
    logged: TestClient, admin: dict[str, str]
) -> None:
    """The dataset's own checks run on the joined rows: their lines are the labels'."""
    ids = [f"r{index}" for index in range(40)]
    log_requests(logged, admin, ids)  # type: ignore[arg-type]
    lines = ["request_id,label", '"never', 'logged",1', *(f"{i},{int(i[1:]) % 2}" for i in ids)]
    lines[12] = "r9,inf"  # line 13: the joined CSV's line 11 (an id over two lines above)
    refused = logged.post(
        "/v1/datasets/from-log",
        headers=admin,
        data={"model": "flowers"},
        files=labels_csv(lines),
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == (
        "labels: target column 'label' has a non-finite value 'inf' at line 13"
    )


def test_an_id_sent_with_two_requests_is_ambiguous_and_refused_unless_newest(
    logged: TestClient, admin: dict[str, str]
) -> None:
    """Issue #42: a client's x-request-id sent twice (other inputs the second time) made
    the second request the dataset's row, unsaid. Each is now logged under an id of the
    gateway's; a label naming the client's id is left out and counted, or takes the
    newest when asked; a label naming the gateway's id takes exactly its request."""
    ids = [f"r{index}" for index in range(40)]
    carried = log_requests(logged, admin, [*ids, "r7"])  # r7 again, with other inputs
    assert carried == [*ids, "r7"]  # the answer echoes the client's id
    lines = labelled(ids)
    body = from_log(logged, admin, lines)
    assert (body["joined"], body["unmatched"], body["ambiguous"]) == (39, 0, 1)
    assert body["rows"] == 39
    body = from_log(logged, admin, lines, newest="true")
    assert (body["joined"], body["unmatched"], body["ambiguous"]) == (40, 0, 1)
    [part] = parts(logged, admin)
    download = logged.get(f"/v1/models/flowers/logs/{part['id']}", headers=admin)
    table = pq.read_table(io.BytesIO(download.content)).to_pylist()
    sevens = [r for r in table if r["client_request_id"] == "r7"]
    assert len(sevens) == 2 and sevens[0]["inputs"] != sevens[1]["inputs"]
    assert len({r["request_id"] for r in table}) == 41  # one id per request, each unique
    exact = [*lines[:8], f"{sevens[1]['request_id']},yes", *lines[9:]]  # r7's second request
    body = from_log(logged, admin, exact)
    assert (body["joined"], body["unmatched"], body["ambiguous"]) == (40, 0, 0)
    everything_twice = logged.post(
        "/v1/datasets/from-log",
        headers=admin,
        data={"model": "flowers"},
        files=labels_csv(["request_id,label", "r7,yes"]),
    )
    assert everything_twice.status_code == 422
    assert "1 ambiguous" in everything_twice.json()["detail"]
    assert "newest=true" in everything_twice.json()["detail"]


def test_a_client_cannot_take_a_gateway_id_label(logged: TestClient, admin: dict[str, str]) -> None:
    """A client that sends, as its own id, an id the gateway gave another request does not
    take that request's label: the gateway's id is matched first."""
    carried = log_requests(logged, admin, [None] * 40)
    assert len(set(carried)) == 40 and all(len(request_id) == 20 for request_id in carried)
    log_requests(logged, admin, [carried[0]] * 3)  # three impostors of the first request
    body = from_log(logged, admin, labelled(carried))
    assert (body["joined"], body["unmatched"], body["ambiguous"]) == (40, 0, 0)


def test_without_a_log_the_model_says_how_to_get_one(
    client: TestClient, admin: dict[str, str], settings: Settings, classifier_onnx: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    response = client.post(
        "/v1/datasets/from-log",
        headers=admin,
        data={"model": "flowers"},
        files=labels_csv(["request_id,label", "r1,yes"]),
    )
    assert response.status_code == 422 and "KILN_LOG_SAMPLE" in response.json()["detail"]


def test_a_forked_process_makes_its_own_ids() -> None:
    """The gateway's ids are a per-process random prefix and a counter: a process forked
    from another (a gateway worker) draws its own prefix, or it would repeat its ids."""
    mine = new_request_id()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.close(writer)
    theirs = os.read(reader, 64).decode()
    os.close(reader)
    os.waitpid(child, 0)
    assert len(theirs) == len(mine) == 20 and theirs[:12] != mine[:12]
    assert new_request_id()[:12] == mine[:12]  # this process keeps its own


def test_writing_a_part_holds_one_row_group_not_the_whole_buffer() -> None:
    """A flush turns rows into JSON and Python lists a row group at a time: 200,000 logged
    rows of one value cost about what 1,024 do, not 200 times that."""
    import tracemalloc
    from types import SimpleNamespace

    import numpy as np

    from app.serving.observations import Observation
    from app.serving.request_log import parquet_part

    def logged(rows: int) -> Observation:
        return Observation(
            name="tiny",
            version=1,
            model=SimpleNamespace(columns=None, labels=None),  # type: ignore[arg-type]
            protocol="v1",
            feeds={"input": np.ones((rows, 1), np.float32)},
            output=np.ones((rows, 1), np.float32),
            latency_s=0.001,
            at=0.0,
            size=8 * rows,
            request_id=new_request_id(),
        )

    peaks = []
    for rows in (ROW_GROUP_ROWS, 200_000):
        entry = logged(rows)
        tracemalloc.start()
        part = parquet_part([entry])
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert part.rows == rows
        peaks.append(peak - len(part.data))
    assert peaks[1] < 8 * max(peaks[0], 1 << 20), peaks

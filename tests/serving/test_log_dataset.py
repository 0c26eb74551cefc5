"""A dataset from the request log reads the log as a stream: a part of ~100 MB of repeated
text (a few KB compressed, in row groups as ``parquet_part`` writes them) is joined with a
handful of labels in a separate process whose peak memory grows far less than the part
unpacks to. And how a label's id matches logged rows: the gateway's id first, repeats
counted, parts from before the client's id was kept apart still read."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from app.contracts.enums import MAX_ID
from app.core.config import Settings
from app.core.db import session_scope
from app.core.errors import InvalidInput
from app.registry import monitoring
from app.serving.log_dataset import _labels, _logged
from app.serving.request_log import LOG_SCHEMA, ROW_GROUP_ROWS
from app.storage import get_store
from tests.conftest import register

ROOT = Path(__file__).resolve().parents[2]
TEXT = "all work and no play " * 4_500  # 94.5 KB a row, one phrase repeated
FILLER_ROWS = 100  # a request of that many rows, before each labelled one
LABELLED = 12
MB = 1 << 20

# ru_maxrss would not do: Linux carries the parent's peak over fork and exec; VmHWM is
# this process's own.
CHILD = r"""
import json, re, sys
from pathlib import Path
from app.core.config import load_settings
from app.core.db import session_scope
from app.core.errors import InvalidInput
from app.serving.log_dataset import dataset_from_log
from app.storage import get_store

def peak_kb():
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))

data_dir, database_url, labels = sys.argv[1:4]
settings = load_settings(data_dir=Path(data_dir), database_url=database_url)
store = get_store(settings)
with session_scope(database_url) as session:  # connected, like a gateway that has served
    session.connection()
before = peak_kb()
with session_scope(database_url) as session:
    made = dataset_from_log(
        session, store, model="flowers", labels=Path(labels), target="label", name=None
    )
    result = {"joined": made.joined, "unmatched": made.unmatched, "rows": made.dataset.n_rows}
print(json.dumps({**result, "before_kb": before, "grew_kb": peak_kb() - before}))
"""


def text_log() -> pa.Table:
    """``LABELLED`` one-row requests r0, r1... of four numbers, each after a request of
    ``FILLER_ROWS`` rows of ``TEXT``, as the log records a model that takes columns."""
    note = orjson.dumps({"note": TEXT}).decode()
    ids: list[str] = []
    numbers: list[int] = []
    inputs: list[str] = []
    for index in range(LABELLED):
        ids += [f"filler-{index}"] * FILLER_ROWS
        numbers += range(FILLER_ROWS)
        inputs += [note] * FILLER_ROWS
        ids.append(f"r{index}")
        numbers.append(0)
        inputs.append(orjson.dumps({f"input_{j}": float(index + j) for j in range(4)}).decode())
    rows = len(ids)
    return pa.table(
        {
            "request_id": [f"{index:020x}" for index in range(rows)],  # the gateway's
            "client_request_id": ids,  # the labels name the clients' ids
            "row": pa.array(numbers, pa.int32()),
            "at": pa.array([1_800_000_000_000] * rows, pa.timestamp("ms", tz="UTC")),
            "model": ["flowers"] * rows,
            "version": pa.array([1] * rows, pa.int32()),
            "protocol": ["v1"] * rows,
            "latency_ms": [1.0] * rows,
            "inputs": inputs,
            "output": [[0.0]] * rows,
            "prediction": ["0.0"] * rows,
        },
        schema=LOG_SCHEMA,
    )


def test_from_log_streams_the_log_in_bounded_memory(
    settings: Settings, classifier_onnx: Path, tmp_path: Path
) -> None:
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    table = text_log()
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP_ROWS)  # as logged
    data, raw_bytes = buffer.getvalue(), table.nbytes
    assert raw_bytes > 100 * MB > 1000 * len(data)  # zstd and dictionaries: a few KB
    stored = get_store(settings).put_bytes("request-logs/flowers/text.parquet", data)
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        monitoring.add_log_part(
            session,
            "flowers",
            key=stored.key,
            sha256=stored.sha256,
            rows=table.num_rows,
            size_bytes=stored.size_bytes,
            raw_bytes=raw_bytes,
            first_at=now,
            last_at=now,
        )
    labels = tmp_path / "labels.csv"
    lines = ["request_id,label", *(f"r{i},{'yes' if i % 2 else 'no'}" for i in range(LABELLED))]
    labels.write_text("\n".join([*lines, "never-logged,yes"]) + "\n")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(settings.data_dir), settings.database_url, str(labels)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["joined"] == LABELLED and result["unmatched"] == 1
    assert result["rows"] == LABELLED
    grew = result["grew_kb"] * 1024
    assert grew < 64 * MB, f"peak RSS grew {grew / MB:.0f} MB reading a {raw_bytes / MB:.0f} MB log"


OLD_SCHEMA = LOG_SCHEMA.remove(LOG_SCHEMA.get_field_index("client_request_id"))


def store_part(settings: Settings, name: str, rows: list[dict], schema: pa.Schema) -> None:
    """A log part of ``rows`` (request_id, [client_request_id,] row, at, inputs) as the
    log writes it, in ``schema``."""
    count = len(rows)
    columns = {
        "row": pa.array([r.get("row", 0) for r in rows], pa.int32()),
        "at": pa.array([r["at"] for r in rows], pa.timestamp("ms", tz="UTC")),
        "model": ["flowers"] * count,
        "version": pa.array([1] * count, pa.int32()),
        "protocol": ["v1"] * count,
        "latency_ms": [1.0] * count,
        "inputs": [r["inputs"] for r in rows],
        "output": [[0.0]] * count,
        "prediction": ["0.0"] * count,
    }
    columns["request_id"] = [r["request_id"] for r in rows]
    if "client_request_id" in schema.names:
        columns["client_request_id"] = pa.array([r.get("client") for r in rows], pa.string())
    table = pa.table(columns, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    stored = get_store(settings).put_bytes(
        f"request-logs/flowers/{name}.parquet", buffer.getvalue()
    )
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        monitoring.add_log_part(
            session,
            "flowers",
            key=stored.key,
            sha256=stored.sha256,
            rows=count,
            size_bytes=stored.size_bytes,
            raw_bytes=table.nbytes,
            first_at=now,
            last_at=now,
        )


def test_matching_prefers_the_gateway_id_counts_repeats_and_reads_older_parts(
    settings: Settings, classifier_onnx: Path
) -> None:
    """A label matches the gateway's id first, else the client's; several rows at the same
    rank are counted, the newest (by ``at``) kept; a part written before the log kept the
    client's id apart (one id, in request_id) is read as clients' ids."""
    register(settings, classifier_onnx, labels=["a", "b", "c"])
    store_part(
        settings,
        "old",
        [
            {"request_id": "old-1", "at": 1_000, "inputs": '{"a":1}'},
            {"request_id": "dup", "at": 3_000, "inputs": '{"a":2}'},  # newer than the next
            {"request_id": "dup", "at": 2_000, "inputs": '{"a":3}'},
        ],
        OLD_SCHEMA,
    )
    store_part(
        settings,
        "new",
        [
            {"request_id": "g1", "client": None, "at": 4_000, "inputs": '{"a":4}'},
            {"request_id": "g2", "client": "g1", "at": 5_000, "inputs": '{"a":5}'},  # impostor
            {"request_id": "g3", "client": "dup", "at": 2_500, "inputs": '{"a":6}'},
            {"request_id": "g4", "client": "x", "row": 1, "at": 6_000, "inputs": '{"a":7}'},
        ],
        LOG_SCHEMA,
    )
    wanted = {(r, 0): "y" for r in ("old-1", "dup", "g1", "g2", "x", "never")} | {("x", 1): "y"}
    with session_scope(settings.database_url) as session:
        found, rows = _logged(session, get_store(settings), "flowers", wanted.keys())
    assert rows == 7
    summary = {key: (match.count, match.inputs) for key, match in found.items()}
    assert summary == {
        ("old-1", 0): (1, '{"a":1}'),
        ("dup", 0): (3, '{"a":2}'),  # two in the old part, one client's in the new
        ("g1", 0): (1, '{"a":4}'),  # the gateway's, not the client's that sent it again
        ("g2", 0): (1, '{"a":5}'),
        ("x", 1): (1, '{"a":7}'),
    }


CELLS = st.sampled_from(
    ["request_id", "row", "label", "r1", "0", "-1", "inf", "nan", "1.0", "1e400", "", " ", "\ufeff"]
) | st.text(max_size=8)


@fuzz_settings(max_examples=300, deadline=None)
@given(
    text=st.lists(st.lists(CELLS, max_size=5), max_size=6).map(
        lambda lines: "\n".join(",".join(cells) for cells in lines)
    ),
    raw=st.binary(max_size=64),
    target=st.sampled_from(["label", "row", "request_id", "client_request_id"]),
)
def test_a_labels_csv_is_read_or_refused_with_a_reason(text: str, raw: bytes, target: str) -> None:
    """Whatever the labels CSV holds, reading it gives labels or a 422, never another error."""
    with tempfile.TemporaryDirectory() as folder:
        for data in (text.encode("utf-8", "surrogatepass"), raw, text.encode() + raw):
            path = Path(folder) / "labels.csv"
            path.write_bytes(data)
            try:
                found = _labels(path, target)
            except InvalidInput as error:
                assert error.message.startswith(("labels: ", "target: "))
            else:
                assert found and all(0 <= row <= MAX_ID for _, row in found)

"""A dataset from the request log reads the log as a stream: a part of ~100 MB of repeated
text (a few KB compressed, in row groups as ``parquet_part`` writes them) is joined with a
handful of labels in a separate process whose peak memory grows far less than the part
unpacks to."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from app.core.config import Settings
from app.core.db import session_scope
from app.registry import monitoring
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
            "request_id": ids,
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

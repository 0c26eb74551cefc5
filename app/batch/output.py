"""A batch prediction's output: each chunk's predictions as an Arrow part next to the rows'
numbers and key columns, and the parts joined into one CSV or Parquet file, one part in
memory at a time."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv as arrow_csv
from pyarrow import ipc

from app.batch.csv_cells import inert_table
from app.batch.spec import PREDICT_KIND
from app.contracts.enums import JobStatus, Task
from app.contracts.results import PredictResult, result_as
from app.core.errors import Conflict, NotFound, Unavailable
from app.storage import ArtifactStore
from app.tables import Job

MEDIA_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True)
class OutputFile:
    """A finished batch prediction's file, ready to be sent."""

    path: Path
    media_type: str
    filename: str


def output_file(job: Job, store: ArtifactStore) -> OutputFile:
    """The output of a predict job that succeeded; Conflict for another kind of job or one
    that has not succeeded, Unavailable when the file is gone from the store."""
    if job.kind != PREDICT_KIND:
        raise Conflict(f"job {job.id} is a {job.kind} job; only predict jobs have an output")
    result = result_as(PredictResult, job.result)
    if job.status != JobStatus.SUCCEEDED or result is None:
        raise Conflict(f"job {job.id} is {job.status}; its output exists when it succeeds")
    output = result.output
    if job.files_deleted_at is not None:
        raise NotFound(f"the output of job {job.id} was deleted")
    if not store.exists(output.key):
        raise Unavailable(f"the output of job {job.id} is missing from the artifact store")
    return OutputFile(
        store.local_path(output.key, output.sha256),
        output.media_type,
        f"job-{job.id}-predictions.{output.format}",
    )


def probability_column(label: Any) -> str:
    return f"probability_{label}"


def output_columns(task: str, labels: list[Any] | None) -> list[str]:
    """The columns an output writes besides the key columns."""
    if task == Task.CLASSIFICATION and labels is not None:
        return ["row", "prediction", *(probability_column(label) for label in labels)]
    return ["row", "prediction"]


def prediction_table(
    first_row: int,
    rows: pa.Table,
    keys: tuple[str, ...],
    output: np.ndarray,
    task: str,
    labels: list[Any] | None,
) -> pa.Table:
    """``row`` (1-based), the key columns as written, then what ``/v1`` predict answers:
    the label and each class's probability, or the value."""
    count = len(output)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "row": pa.array(np.arange(first_row + 1, first_row + count + 1, dtype=np.int64))
    }
    for key in keys:
        columns[key] = rows.column(key)
    if task == Task.CLASSIFICATION and labels is not None:
        columns["prediction"] = pa.array(labels).take(pa.array(output.argmax(axis=1)))
        for index, label in enumerate(labels):
            columns[probability_column(label)] = pa.array(output[:, index])
    else:
        columns["prediction"] = pa.array(output[:, 0].astype(np.float64))
    return pa.table(columns)


def part_bytes(table: pa.Table) -> bytes:
    """A part as an Arrow IPC file."""
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def read_part(path: Path) -> pa.Table:
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


class OutputWriter:
    """The output file, written by a thread of its own while the next chunks are read and
    predicted: ``write`` hands it a table (waiting while two are queued), ``close`` waits
    for the file to be complete and raises what went wrong in the thread."""

    def __init__(self, destination: Path, output_format: str) -> None:
        self.destination = destination
        self.output_format = output_format
        self._tables: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        writer: arrow_csv.CSVWriter | pq.ParquetWriter | None = None
        try:
            while (table := self._tables.get()) is not None:
                if self._error is not None:
                    continue  # drain, so that write() never blocks forever
                if self.output_format == "csv":
                    table = inert_table(table)
                if writer is None:
                    writer = (
                        arrow_csv.CSVWriter(str(self.destination), table.schema)
                        if self.output_format == "csv"
                        else pq.ParquetWriter(str(self.destination), table.schema)
                    )
                writer.write_table(table)
        except BaseException as error:
            self._error = error
            while self._tables.get() is not None:
                pass
        finally:
            if writer is not None:
                writer.close()

    def write(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._tables.put(table)

    def close(self) -> None:
        self._tables.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop the thread when the job fails anyway; its own error, if any, is dropped
        (the one already raised says what went wrong first)."""
        self._tables.put(None)
        self._thread.join()

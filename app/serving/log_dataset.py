"""A dataset from a model's request log: the logged inputs of the requests a labels CSV
names (by ``request_id``, and ``row`` for a request of several rows), with their labels as
the target, uploaded like any CSV (so it gets a profile, an encoding and a split)."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import csv as arrow_csv

from app.contracts.enums import Task
from app.core.db import Session
from app.core.errors import InvalidInput
from app.core.names import COLUMN_NAME, DATASET_NAME, MODEL_NAME
from app.datasets import service as datasets
from app.registry import monitoring
from app.registry.service import get_model, get_version
from app.storage import ArtifactStore
from app.storage.base import CHUNK_BYTES
from app.tables import Dataset, RequestLogPart

REQUEST_ID = "request_id"
ROW = "row"
# A log part is decoded about this many bytes of its columns at a time (the reader's peak
# is a few times that), and at most this many rows.
BATCH_BYTES = 1 << 20
BATCH_MAX_ROWS = 1024


@dataclass(frozen=True)
class FromLog:
    """The dataset made, and how the labels matched the log."""

    dataset: Dataset
    joined: int
    unmatched: int


def _labels(path: Path, target: str) -> dict[tuple[str, int], str]:
    """(request id, row) -> label, from the labels CSV (every cell read as text)."""
    try:
        table = arrow_csv.read_csv(
            path, convert_options=arrow_csv.ConvertOptions(strings_can_be_null=False)
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as error:
        raise InvalidInput(f"labels: not a readable CSV ({str(error)[:200]})") from None
    header = table.column_names
    for needed in (REQUEST_ID, target):
        if needed not in header:
            raise InvalidInput(f"labels: column {needed!r} not in the CSV header: {header[:30]}")
    ids = [str(value) for value in table.column(REQUEST_ID).to_pylist()]
    rows = table.column(ROW).to_pylist() if ROW in header else [0] * len(ids)
    labels = table.column(target).to_pylist()
    found: dict[tuple[str, int], str] = {}
    for line, (request, row, label) in enumerate(zip(ids, rows, labels, strict=True), start=2):
        try:
            number = int(row)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"labels: line {line}: row {str(row)[:40]!r} is not a whole number"
            ) from None
        if label is None or str(label) == "":
            continue  # not labelled (yet)
        found[(request, number)] = str(label)
    if not found:
        raise InvalidInput(f"labels: no labelled row (the {target!r} column is empty)")
    return found


def _batch_rows(part: RequestLogPart) -> int:
    """Rows of ``part`` decoded at a time: about ``BATCH_BYTES`` of its columns, by its
    average row (``BATCH_MAX_ROWS`` for a part recorded before its size was measured)."""
    if not part.raw_bytes or not part.rows:
        return BATCH_MAX_ROWS
    return max(1, min(BATCH_MAX_ROWS, BATCH_BYTES * part.rows // part.raw_bytes))


def _logged(
    session: Session, store: ArtifactStore, name: str, wanted: Collection[tuple[str, int]]
) -> tuple[dict[tuple[str, int], tuple[str, int]], int]:
    """The logged inputs (JSON) and answering version of each (request id, row) in
    ``wanted`` that the model's request log holds (the latest kept), and how many rows the
    log holds. Each part is streamed a batch at a time and only the wanted rows are kept:
    memory is bounded by ``wanted`` and one batch, never by the size of the log."""
    ids = pa.array(list({request for request, _ in wanted}), pa.string())
    found: dict[tuple[str, int], tuple[str, int]] = {}
    logged = 0
    for part in monitoring.log_parts(session, name):
        path = store.local_path(part.key, part.sha256)
        with pq.ParquetFile(path, pre_buffer=False, buffer_size=CHUNK_BYTES) as parquet:
            for batch in parquet.iter_batches(
                batch_size=_batch_rows(part),
                columns=[REQUEST_ID, ROW, "inputs", "version"],
                use_threads=False,  # one batch decoded at a time, not one per column thread
            ):
                logged += batch.num_rows
                hits = batch.filter(pc.is_in(batch.column(REQUEST_ID), value_set=ids))
                for request, row, values, version in zip(
                    hits.column(REQUEST_ID).to_pylist(),
                    hits.column(ROW).to_pylist(),
                    hits.column("inputs").to_pylist(),
                    hits.column("version").to_pylist(),
                    strict=True,
                ):
                    if (request, row) in wanted:
                        found[(request, row)] = (values, version)
    return found, logged


def _accepted(session: Session, model: str, versions: set[int]) -> list[str]:
    """The inputs the answering versions accept but never read (ignored, or dropped by
    feature selection): the log has no values for them, the new dataset keeps them as
    empty columns, so a version trained on it accepts the same requests."""
    names: list[str] = []
    for number in sorted(versions):
        for spec in get_version(session, model, number).signature.inputs:
            if (spec.kind == "ignored" or not spec.required) and spec.name not in names:
                names.append(spec.name)
    return names


def _cells(record: dict[str, Any]) -> dict[str, Any]:
    """A logged row as CSV cells: a tensor input's values spread over input_0, input_1..."""
    cells: dict[str, Any] = {}
    for name, value in record.items():
        if isinstance(value, list):
            cells.update({f"{name}_{index}": item for index, item in enumerate(value)})
        else:
            cells[name] = value
    return cells


def dataset_from_log(
    session: Session,
    store: ArtifactStore,
    *,
    model: str,
    labels: Path,
    target: str,
    name: str | None,
) -> FromLog:
    """Join the labels with the model's logged inputs and upload the result as a dataset;
    422 naming what is missing (the columns, or any match with the log)."""
    MODEL_NAME.check(model, "model")
    COLUMN_NAME.check(target, "target")
    if name is not None:
        DATASET_NAME.check(name, "name")
    task = get_model(session, model).task
    wanted = _labels(labels, target)  # first: bounded by the upload limit, not the log
    logged, rows = _logged(session, store, model, wanted.keys())
    if not rows:
        raise InvalidInput(
            f"model: {model!r} has no request log yet (set KILN_LOG_SAMPLE or the model's "
            "log_sample, and send it requests)"
        )
    records = [
        (_cells(orjson.loads(logged[key][0])), label)
        for key, label in wanted.items()
        if key in logged
    ]
    answered = {version for _, version in logged.values()}
    if not records:
        raise InvalidInput(
            f"labels: none of the {len(wanted)} labelled requests is in {model!r}'s request log "
            f"({rows} logged rows); match its request_id (and row)"
        )
    header: list[str] = []
    for cells, _ in records:
        header += [column for column in cells if column not in header]
    header += [name for name in _accepted(session, model, answered) if name not in header]
    if target in header:
        raise InvalidInput(f"target: {target!r} is also an input column of the model")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "from-log.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*header, target])
            for cells, label in records:
                writer.writerow(
                    [*("" if cells.get(c) is None else cells[c] for c in header), label]
                )
        dataset = datasets.create_dataset(
            session,
            store,
            upload=path,
            filename=f"{model}-log.csv",
            target=target,
            name=name or f"{model} request log, {len(records)} labelled rows",
            task=Task(task),
            input_shape=None,
        )
    return FromLog(dataset=dataset, joined=len(records), unmatched=len(wanted) - len(records))

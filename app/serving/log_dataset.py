"""A dataset from a model's request log: the logged inputs of the requests a labels CSV
names (by ``request_id``, and ``row`` for a request of several rows), with their labels as
the target, uploaded like any CSV (so it gets a profile, an encoding and a split).

A label's ``request_id`` is the id its request's answer carried: the client's own
``x-request-id`` (the log's ``client_request_id``) or, when it sent none, the one the
gateway made (the log's ``request_id``, unique). A gateway id is matched first: a client
cannot take over another request's label by sending its id. A client's id may have been
sent with several requests: a label that matches more than one logged row is ambiguous,
refused and counted, unless the caller asks for the newest of them."""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.contracts.enums import MAX_ID, Task
from app.core.db import Session
from app.core.errors import InvalidInput
from app.core.names import COLUMN_NAME, DATASET_NAME, MODEL_NAME
from app.core.text_files import first_undecodable_line
from app.datasets import service as datasets
from app.registry import monitoring
from app.registry.service import get_model
from app.serving.log_columns import log_columns
from app.storage import ArtifactStore
from app.storage.base import CHUNK_BYTES
from app.tables import Dataset, RequestLogPart

REQUEST_ID = "request_id"
CLIENT_REQUEST_ID = "client_request_id"
ROW = "row"
# A log part is decoded about this many bytes of its columns at a time (the reader's peak
# is a few times that), and at most this many rows.
BATCH_BYTES = 1 << 20
BATCH_MAX_ROWS = 1024
# A row number as a spreadsheet may write it: digits, perhaps with a zero fraction ("3.0").
_ROW_NUMBER = re.compile(r"([0-9]{1,10})(?:\.0*)?")

Key = tuple[str, int]  # (request id, row)


@dataclass(frozen=True)
class FromLog:
    """The dataset made, and how the labels matched the log: joined, in no logged request
    (unmatched), or in more than one (ambiguous: refused, or joined to the newest); and
    how many joined rows repeat an earlier row's inputs (duplicates: kept, and kept in one
    split)."""

    dataset: Dataset
    joined: int
    unmatched: int
    ambiguous: int
    duplicates: int


def _header(header: list[str], target: str) -> tuple[int, int | None, int]:
    """The positions of the id, row (if any) and label columns in the labels' header; 422
    naming the column that is missing, repeated or both the id and the label."""
    for special in (REQUEST_ID, ROW):
        if target == special:
            raise InvalidInput(
                f"target: {target!r} is a column the labels are matched by; name the column "
                "that holds the labels"
            )
    if not header or header == [""]:
        raise InvalidInput("labels: the CSV's first line is empty; it must be the header")
    for name in (REQUEST_ID, ROW, target):
        where = [index + 1 for index, column in enumerate(header) if column == name]
        if len(where) > 1:
            raise InvalidInput(
                f"labels: column {name!r} appears {len(where)} times in the CSV header "
                f"(columns {', '.join(map(str, where))}); keep one"
            )
    for needed in (REQUEST_ID, target):
        if needed not in header:
            raise InvalidInput(f"labels: column {needed!r} not in the CSV header: {header[:30]}")
    row = header.index(ROW) if ROW in header else None
    return header.index(REQUEST_ID), row, header.index(target)


def _row_number(cell: str, line: int) -> int:
    """A labels line's ``row``: a whole number within the log's 32-bit column."""
    found = _ROW_NUMBER.fullmatch(cell.strip())
    number = int(found[1]) if found else -1
    if not 0 <= number <= MAX_ID:
        raise InvalidInput(
            f"labels: line {line}: row {cell[:40]!r} is not a whole number from 0 to {MAX_ID}"
        )
    return number


def _labels(path: Path, target: str) -> dict[Key, tuple[str, int]]:
    """(request id, row) -> label and its line, from the labels CSV (every cell read as
    text: an id of digits keeps its leading zeros); 422 naming the line or column that is
    wrong."""
    found: dict[Key, tuple[str, int]] = {}
    reader: Any = None
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is not a column
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InvalidInput(
                    f"labels: the CSV is empty; it needs a header naming {REQUEST_ID!r} and "
                    f"{target!r}"
                )
            id_at, row_at, label_at = _header(header, target)
            ended = reader.line_num
            for cells in reader:
                line, ended = ended + 1, reader.line_num  # a quoted cell may span lines
                if not cells:
                    continue  # a blank line
                if len(cells) != len(header):
                    raise InvalidInput(
                        f"labels: line {line}: {len(cells)} cells, the header has {len(header)}"
                    )
                request = cells[id_at]
                if not request:
                    raise InvalidInput(f"labels: line {line}: {REQUEST_ID} is empty")
                number = 0 if row_at is None else _row_number(cells[row_at], line)
                label = cells[label_at]
                if label == "":
                    continue  # not labelled (yet)
                first = found.setdefault((request, number), (label, line))
                if first[1] != line:
                    raise InvalidInput(
                        f"labels: line {line}: request {request[:64]!r} row {number} is "
                        f"labelled already on line {first[1]}"
                    )
    except csv.Error as error:
        line = reader.line_num if reader is not None else 1
        raise InvalidInput(f"labels: line {line}: not a readable CSV ({error})") from None
    except UnicodeDecodeError:
        raise InvalidInput(
            f"labels: line {first_undecodable_line(path)}: not UTF-8 text (save the CSV as UTF-8)"
        ) from None
    if not found:
        raise InvalidInput(f"labels: no labelled row (the {target!r} column is empty)")
    return found


def _batch_rows(part: RequestLogPart) -> int:
    """Rows of ``part`` decoded at a time: about ``BATCH_BYTES`` of its columns, by its
    average row (``BATCH_MAX_ROWS`` for a part recorded before its size was measured)."""
    if not part.raw_bytes or not part.rows:
        return BATCH_MAX_ROWS
    return max(1, min(BATCH_MAX_ROWS, BATCH_BYTES * part.rows // part.raw_bytes))


@dataclass(slots=True)
class _Match:
    """The logged rows a label matched, at the best tier seen (see ``_logged``)."""

    tier: int  # GATEWAY_ID or CLIENT_ID
    count: int  # rows matched at that tier
    at: int  # ms since the epoch, of the newest of them
    inputs: str  # the newest's inputs (JSON)
    version: int  # and the version that answered it


GATEWAY_ID, CLIENT_ID = 1, 0  # a label matches a gateway's id first, then a client's


def _match(
    found: dict[Key, _Match], key: Key, tier: int, at: int, inputs: str, version: int
) -> None:
    current = found.get(key)
    if current is None or tier > current.tier:
        found[key] = _Match(tier, 1, at, inputs, version)
    elif tier == current.tier:
        current.count += 1
        if at >= current.at:  # the newest; of two at the same time, the later logged
            current.at, current.inputs, current.version = at, inputs, version


def _candidates(hits: pa.RecordBatch, both: bool) -> Iterator[tuple[Key, int, int, str, int]]:
    """(id and row, tier, at, inputs, version) for each id a logged row carries: the
    gateway's and the client's (a part from before ``client_request_id``: one, a client's)."""
    count = hits.num_rows
    clients = hits.column(CLIENT_REQUEST_ID).to_pylist() if both else [None] * count
    tier = GATEWAY_ID if both else CLIENT_ID
    for request, client, row, at, inputs, version in zip(
        hits.column(REQUEST_ID).to_pylist(),
        clients,
        hits.column(ROW).to_pylist(),
        hits.column("at").cast(pa.int64()).to_pylist(),
        hits.column("inputs").to_pylist(),
        hits.column("version").to_pylist(),
        strict=True,
    ):
        yield (request, row), tier, at, inputs, version
        if client is not None:
            yield (client, row), CLIENT_ID, at, inputs, version


def _logged(
    session: Session, store: ArtifactStore, name: str, wanted: Collection[Key]
) -> tuple[dict[Key, _Match], int]:
    """The logged rows each (request id, row) in ``wanted`` matches, by the gateway's
    ``request_id`` or, when no row has that one, by the client's ``client_request_id``
    (a part written before the log kept both has the client's id, or one the gateway
    made, in ``request_id``: a client's), and how many rows the log holds. Each part is
    streamed a batch at a time and only the wanted rows are kept: memory is bounded by
    ``wanted`` and one batch, never by the size of the log."""
    ids = pa.array(list({request for request, _ in wanted}), pa.string())
    found: dict[Key, _Match] = {}
    logged = 0
    for part in monitoring.log_parts(session, name):
        path = store.local_path(part.key, part.sha256)
        with pq.ParquetFile(path, pre_buffer=False, buffer_size=CHUNK_BYTES) as parquet:
            both = CLIENT_REQUEST_ID in parquet.schema_arrow.names
            extra = [CLIENT_REQUEST_ID] if both else []
            for batch in parquet.iter_batches(
                batch_size=_batch_rows(part),
                columns=[REQUEST_ID, ROW, "at", "inputs", "version", *extra],
                use_threads=False,  # one batch decoded at a time, not one per column thread
            ):
                logged += batch.num_rows
                hit = pc.is_in(batch.column(REQUEST_ID), value_set=ids)
                if both:
                    clients = pc.is_in(batch.column(CLIENT_REQUEST_ID), value_set=ids)
                    hit = pc.or_kleene(hit, clients)
                for key, tier, at, inputs, version in _candidates(batch.filter(hit), both):
                    if key in wanted:
                        _match(found, key, tier, at, inputs, version)
    return found, logged


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what a CSV reader counts as a new line
_LINE = re.compile(r"\bline (\d+)\b")


def _in_labels(message: str, labels_line: dict[int, int]) -> str:
    """A dataset check's message about the joined CSV, its lines named as the labels'."""
    return "labels: " + _LINE.sub(
        lambda found: (
            f"line {labels_line[int(found[1])]}" if int(found[1]) in labels_line else found[0]
        ),
        message,
    )


def dataset_from_log(
    session: Session,
    store: ArtifactStore,
    *,
    model: str,
    labels: Path,
    target: str,
    name: str | None,
    newest: bool = False,
) -> FromLog:
    """Join the labels with the model's logged inputs and upload the result as a dataset;
    422 naming what is missing (the columns, or any match with the log). A label that
    matches several logged rows (a client's id sent twice) is left out and counted, or,
    with ``newest``, joined to the newest of them."""
    MODEL_NAME.check(model, "model")
    COLUMN_NAME.check(target, "target")
    if name is not None:
        DATASET_NAME.check(name, "name")
    task = get_model(session, model).task
    wanted = _labels(labels, target)  # first: bounded by the upload limit, not the log
    found, rows = _logged(session, store, model, wanted.keys())
    if not rows:
        raise InvalidInput(
            f"model: {model!r} has no request log yet (set KILN_LOG_SAMPLE or the model's "
            "log_sample, and send it requests)"
        )
    ambiguous = sum(1 for match in found.values() if match.count > 1)
    joined = {key: match for key, match in found.items() if match.count == 1 or newest}
    columns = log_columns(session, model, {match.version for match in joined.values()})
    records = [
        (columns.cells(orjson.loads(joined[key].inputs), joined[key].version), label, line)
        for key, (label, line) in wanted.items()
        if key in joined
    ]
    if not records and ambiguous:
        raise InvalidInput(
            f"labels: none of the {len(wanted)} labelled requests could be joined with "
            f"{model!r}'s request log: {len(wanted) - len(found)} not in it, {ambiguous} "
            "ambiguous (the id was sent with several requests: label by the log's "
            "request_id, or set newest=true to take the newest)"
        )
    if not records:
        raise InvalidInput(
            f"labels: none of the {len(wanted)} labelled requests is in {model!r}'s request log "
            f"({rows} logged rows); match its request_id (and row)"
        )
    header: list[str] = []
    for cells, _, _ in records:
        header += [column for column in cells if column not in header]
    header += [name for name in columns.accepted if name not in header]
    if target in header:
        raise InvalidInput(f"target: {target!r} is also an input column of the model")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "from-log.csv"
        labels_line: dict[int, int] = {}  # the joined CSV's line -> the labels' line
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*header, target])
            at = 2
            for cells, label, line in records:
                row = [*("" if cells.get(c) is None else cells[c] for c in header), label]
                writer.writerow(row)
                labels_line[at] = line
                at += 1 + sum(len(_LINE_BREAK.findall(str(cell))) for cell in row)
        try:
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
        except InvalidInput as error:  # about the joined CSV: name the labels' lines
            raise InvalidInput(_in_labels(error.message, labels_line)) from None
    return FromLog(
        dataset=dataset,
        joined=len(records),
        unmatched=len(wanted) - len(found),
        ambiguous=ambiguous,
        duplicates=dataset.profile.duplicate_rows if dataset.profile is not None else 0,
    )

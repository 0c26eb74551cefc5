"""Sampled request logs: a share of inference requests (``KILN_LOG_SAMPLE``, or a model's
``log_sample``) kept with the version that answered, its latency and its output, written
in batches as Parquet parts to the artifact store. Never a key, a header or an address: the
request path hands over the feeds and the answer and nothing else.

The request path only samples a request onto the monitors' queue (``app.serving.monitors``);
their thread keeps it in a buffer bounded in bytes (``KILN_LOG_BUFFER_MB``; past it a
request is not logged, and counted) and each flush turns the buffer into one Parquet part
per model.

Every logged request is kept under an id the gateway makes (``request_id``: unique across
processes and restarts), and the client's own ``x-request-id``, if it sent one, beside it
(``client_request_id``): a client may send the same id twice, and the log must still tell
the two requests apart. The answer's ``x-request-id`` echoes the client's id, or carries
the gateway's when the client sent none (``app.serving.log_dataset`` matches labels by
either)."""

from __future__ import annotations

import io
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from app.serving.observations import Observation

REQUEST_ID_LENGTH = 64
LOG_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),  # the gateway's: unique
        ("client_request_id", pa.string()),  # the client's x-request-id; null without one
        ("row", pa.int32()),
        ("at", pa.timestamp("ms", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("protocol", pa.string()),
        ("latency_ms", pa.float64()),
        ("inputs", pa.string()),  # one JSON object per row: column (or input) -> value
        ("output", pa.list_(pa.float64())),
        ("prediction", pa.string()),
    ]
)


def valid_request_id(value: str | None) -> str | None:
    """A client's request id when it is short printable ASCII, else None."""
    if value and len(value) <= REQUEST_ID_LENGTH and value.isascii() and value.isprintable():
        return value
    return None


# A logged request's id is this process's prefix (random, 12 hex digits) and a counter:
# unique across processes and restarts without a system call per request. A forked child
# draws its own prefix (it would repeat its parent's ids otherwise).
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count()


def _new_prefix() -> None:
    global _PREFIX, _COUNTER
    _PREFIX = os.urandom(6).hex()
    _COUNTER = itertools.count()


os.register_at_fork(after_in_child=_new_prefix)


def new_request_id() -> str:
    """A new id, unique across the gateway's processes: 20 hex digits (O(1), no I/O)."""
    return f"{_PREFIX}{next(_COUNTER):08x}"


Entry = Observation  # a logged request is the observation the request path queued


def _value(value: Any) -> Any:
    """A JSON-able cell: None for gaps (NaN, empty text)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value or None
    number = float(value)
    return None if math.isnan(number) else number


def _inputs_json(entry: Entry, rows: int, start: int, stop: int) -> list[str]:
    """Rows ``start`` to ``stop`` of an entry's inputs as the client sent them, as JSON:
    column -> value (a gap: null), or a tensor model's input -> the row's values."""
    model = entry.model
    if model.columns is None:
        tensors = {name: values.reshape(rows, -1) for name, values in entry.feeds.items()}
        return [
            orjson.dumps(
                {name: values[index] for name, values in tensors.items()},
                option=orjson.OPT_SERIALIZE_NUMPY,
            ).decode()
            for index in range(start, stop)
        ]
    columns = {name: values.reshape(rows) for name, values in entry.feeds.items()}
    return [
        orjson.dumps({name: _value(values[index]) for name, values in columns.items()}).decode()
        for index in range(start, stop)
    ]


# Rows per Parquet row group: a reader streams a part a row group at a time (from-log
# keeps only the rows a labels CSV names), never the whole part.
ROW_GROUP_ROWS = 1024


@dataclass(frozen=True)
class LogPart:
    """A request-log part: the Parquet file, its columns' uncompressed size (Arrow's
    in-memory bytes, what reading it unpacks: repeated text that zstd and Parquet's
    dictionaries shrink a thousandfold counts in full) and its rows."""

    data: bytes
    raw_bytes: int
    rows: int


Slice = tuple[Entry, int, int]  # an entry's rows start to stop


def _slices(entries: list[Entry]) -> Iterator[list[Slice]]:
    """The entries' rows in groups of at most ``ROW_GROUP_ROWS``."""
    group: list[Slice] = []
    size = 0
    for entry in entries:
        rows, start = len(entry.output), 0
        while start < rows:
            stop = min(rows, start + ROW_GROUP_ROWS - size)
            group.append((entry, start, stop))
            size += stop - start
            start = stop
            if size == ROW_GROUP_ROWS:
                yield group
                group, size = [], 0
    if group:
        yield group


def _table(group: list[Slice]) -> pa.Table:
    """One row group's rows as an Arrow table of ``LOG_SCHEMA``."""
    ids: list[str] = []
    client_ids: list[str | None] = []
    numbers: list[int] = []
    times: list[float] = []
    versions: list[int] = []
    protocols: list[str] = []
    latencies: list[float] = []
    inputs: list[str] = []
    outputs: list[np.ndarray] = []
    predictions: list[str] = []
    for entry, start, stop in group:
        rows, count = len(entry.output), stop - start
        output = np.asarray(entry.output, dtype=np.float64).reshape(rows, -1)[start:stop]
        ids += [entry.request_id or ""] * count  # a logged entry always has its id
        client_ids += [entry.client_request_id] * count
        numbers += range(start, stop)
        times += [entry.at] * count
        versions += [entry.version] * count
        protocols += [entry.protocol] * count
        latencies += [entry.latency_s * 1000] * count
        inputs += _inputs_json(entry, rows, start, stop)
        outputs.append(output)
        labels = entry.model.labels
        if labels and output.shape[1] == len(labels):
            predictions += [str(labels[int(i)]) for i in output.argmax(axis=1)]
        else:
            predictions += [repr(float(value)) for value in output[:, 0]]
    widths = np.array([o.shape[1] for o in outputs for _ in range(len(o))], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    flat = np.concatenate([o.reshape(-1) for o in outputs])
    return pa.Table.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(client_ids, pa.string()),
            pa.array(numbers, pa.int32()),
            pa.array((np.asarray(times) * 1000).astype(np.int64)).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            pa.array([group[0][0].name] * len(ids), pa.string()),
            pa.array(versions, pa.int32()),
            pa.array(protocols, pa.string()),
            pa.array(latencies, pa.float64()),
            pa.array(inputs, pa.string()),
            pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float64())),
            pa.array(predictions, pa.string()),
        ],
        schema=LOG_SCHEMA,
    )


def parquet_part(entries: list[Entry]) -> LogPart:
    """One Parquet file of ``entries``' rows (one per row of each request), written a row
    group of ``ROW_GROUP_ROWS`` at a time: what writing it holds is one group's rows as
    Python objects and the compressed file, never every row of the buffer at once."""
    buffer = io.BytesIO()
    raw_bytes = rows = 0
    with pq.ParquetWriter(buffer, LOG_SCHEMA, compression="zstd") as writer:
        for group in _slices(entries):
            table = _table(group)
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            raw_bytes += table.nbytes
            rows += table.num_rows
    return LogPart(data=buffer.getvalue(), raw_bytes=raw_bytes, rows=rows)


class RequestLog:
    """The buffer of logged requests between flushes, bounded in bytes like the queue they
    came from (thread-safe)."""

    def __init__(self, max_bytes: int, on_drop: Callable[[], None] = lambda: None) -> None:
        self.max_bytes = max_bytes
        self.on_drop = on_drop  # a request not logged: the buffer (or the queue) was full
        self.dropped = 0
        self._entries: list[Entry] = []
        self._bytes = 0
        self._lock = threading.Lock()

    def drop(self) -> None:
        """Count a sampled request that was not kept."""
        with self._lock:
            self.dropped += 1
        self.on_drop()

    def add(self, observations: list[Observation]) -> None:
        """Keep the logged observations while the buffer has room; count the rest."""
        for item in observations:
            with self._lock:
                if self._bytes + item.size > self.max_bytes:
                    kept = False
                else:
                    self._entries.append(item)
                    self._bytes += item.size
                    kept = True
            if not kept:
                self.drop()

    def take(self) -> dict[str, list[Entry]]:
        """The buffered entries by model (and empty the buffer)."""
        with self._lock:
            entries, self._entries, self._bytes = self._entries, [], 0
        by_model: dict[str, list[Entry]] = {}
        for entry in entries:
            by_model.setdefault(entry.name, []).append(entry)
        return by_model

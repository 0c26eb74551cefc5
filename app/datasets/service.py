"""Dataset rules: validate an upload, store it, and load its arrays back."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from pyarrow import ipc

from app.contracts.enums import Task
from app.core.db import Session
from app.core.errors import BrokenInvariant, InvalidInput
from app.core.names import COLUMN_NAME, DATASET_NAME, InvalidName, refused_character
from app.core.scratch import owner_prefix
from app.datasets.parsing import parse_csv, raw_columns
from app.datasets.profile import profile_of
from app.datasets.repository import DatasetRepository
from app.storage import ArtifactStore
from app.tables import Dataset

MAX_NAME_LENGTH = DATASET_NAME.max_length


@dataclass(frozen=True)
class DatasetArrays:
    """A dataset's features and encoded target, as stored."""

    features: np.ndarray
    target: np.ndarray


def original_key(dataset_id: int) -> str:
    return f"datasets/{dataset_id}/original.csv"


def arrays_key(dataset_id: int) -> str:
    return f"datasets/{dataset_id}/arrays.npz"


def raw_key(dataset_id: int) -> str:
    return f"datasets/{dataset_id}/raw.arrow"


def create_dataset(
    session: Session,
    store: ArtifactStore,
    *,
    upload: Path,
    filename: str,
    target: str,
    name: str | None,
    task: Task | None,
    input_shape: str | None,
    columns: str | None = None,
) -> Dataset:
    """Validate the uploaded CSV, then record it and store the original and parsed arrays."""
    if not target.strip():
        raise InvalidInput("target: give the name of the column to predict")
    COLUMN_NAME.check(target, "target")
    if name:
        display_name = DATASET_NAME.check(name, "name")
    else:  # named after the file: a name the client did not choose is tidied, not refused
        if refused_character(filename) is not None:
            raise InvalidName(
                f"file: the file name {filename[:80]!r} holds a control "
                "character; rename the file or give a name"
            )
        display_name = (Path(filename).stem.strip() or "dataset")[:MAX_NAME_LENGTH]
    parsed = parse_csv(upload, target=target, task=task, input_shape=input_shape, columns=columns)
    if parsed.columns is None:
        raise BrokenInvariant("parsed.columns is None")
    datasets = DatasetRepository(session)
    dataset = datasets.add(
        Dataset(
            name=display_name,
            filename=Path(filename).name[:255] or "upload.csv",
            target=target,
            task=parsed.task,
            n_rows=parsed.n_rows,
            feature_names=parsed.feature_names,
            class_labels=parsed.class_labels,
            input_shape=parsed.input_shape,
            sha256="",
            size_bytes=0,
            encoding=parsed.encoding,
            profile=profile_of(
                parsed.columns,
                parsed.target,
                target,
                parsed.task,
                parsed.class_labels,
                parsed.dropped,
                duplicates=parsed.duplicates,
            ),
        )
    )
    stored = store.put_file(original_key(dataset.id), upload)
    with tempfile.NamedTemporaryFile(
        dir=upload.parent, suffix=".npz", prefix=owner_prefix("parse")
    ) as arrays:
        np.savez(arrays, features=parsed.features, target=parsed.target)  # no copy in memory
        arrays.flush()
        arrays_sha256 = store.put_file(arrays_key(dataset.id), Path(arrays.name)).sha256
    raw_sha256 = None
    if parsed.encoding is not None:
        with tempfile.NamedTemporaryFile(
            dir=upload.parent, suffix=".arrow", prefix=owner_prefix("parse")
        ) as raw:
            table = pa.table(raw_columns(parsed.columns))
            with ipc.new_file(raw.name, table.schema) as writer:
                writer.write_table(table)
            raw_sha256 = store.put_file(raw_key(dataset.id), Path(raw.name)).sha256
    return datasets.record_files(
        dataset, original=stored, arrays_sha256=arrays_sha256, raw_sha256=raw_sha256
    )


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    """The dataset, or NotFound."""
    return DatasetRepository(session).kept(dataset_id)


def list_datasets(session: Session, *, limit: int, offset: int) -> tuple[list[Dataset], int]:
    """A page of datasets, newest first, with the total count."""
    return DatasetRepository(session).newest_first(limit=limit, offset=offset)


def load_arrays(store: ArtifactStore, dataset: Dataset) -> DatasetArrays:
    """The stored features and target (no pickle is ever loaded)."""
    path = store.local_path(arrays_key(dataset.id), dataset.arrays_sha256)
    with np.load(path, allow_pickle=False) as data:
        return DatasetArrays(features=data["features"], target=data["target"])


def load_raw(store: ArtifactStore, dataset: Dataset, rows: np.ndarray) -> dict[str, pa.Array]:
    """The raw feature columns of ``rows`` (numbers, or text with '' for gaps), as the
    served graph takes them; only for datasets with a preprocessing."""
    with pa.memory_map(str(store.local_path(raw_key(dataset.id), dataset.raw_sha256))) as source:
        table = ipc.open_file(source).read_all().take(pa.array(rows))
    return {name: table.column(name).combine_chunks() for name in table.column_names}

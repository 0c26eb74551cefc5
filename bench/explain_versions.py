"""The explain benchmark's table and versions: a generated, seeded table (numbers with
gaps, whole-number counts, categories of a few and many levels and a date column), and one
version per table family fitted on it and registered the way a search's finish registers
it (exported behind the table's preprocessing, its explanation file and global importance
made by ``app.search.explanations.stored_explanations``), without running a search."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from app.contracts.encoding import TableEncoding
from app.contracts.networks import MLPConfig
from app.contracts.signature import Signature, VersionConfig
from app.core.config import Settings
from app.core.db import session_scope
from app.explain.data import ExplainData, ExplainRecord
from app.preprocessing.columns import type_column
from app.preprocessing.encode import encode, feeds, plain
from app.preprocessing.fit import fit_encoding
from app.preprocessing.graph import with_rows
from app.registry.service import VersionDraft, register_version
from app.search.explanations import stored_explanations
from app.storage import get_store
from app.training.ensemble import Fitted, MixedAverage, export_model, width_of
from app.training.export import OUTPUT_NAME
from app.training.models import Network
from app.training.table_models import FitOptions, TableData, fit_table_model
from app.training.train import TrainConfig, TrainData, train

LABELS = ["low", "mid", "high"]
ROWS = 1200
TRAIN = 800  # fitting rows (the last VALID of them validate), held-out rows after
VALID = 160
MLP_HIDDEN = (64, 64)
MLP_EPOCHS = 20


@dataclass(frozen=True)
class Table:
    """A typed table: its encoding, raw columns (numpy), encoded features and classes."""

    encoding: TableEncoding
    raw: dict[str, np.ndarray]
    features: np.ndarray
    classes: np.ndarray

    @property
    def width(self) -> int:
        return len(self.encoding.columns)

    def feeds(self, rows: slice) -> dict[str, np.ndarray]:
        part = {name: values[rows] for name, values in self.raw.items()}
        return feeds(self.encoding, part, self.encoding.sources_of(None))

    def record(self, index: int) -> dict[str, Any]:
        """One row as predict's JSON takes it (None for a gap)."""
        record: dict[str, Any] = {}
        for name, values in self.raw.items():
            value = values[index]
            if isinstance(value, str):
                record[name] = value or None
            else:
                record[name] = None if np.isnan(value) else float(value)
        return record


def _numbers(values: np.ndarray, rng: np.random.Generator, gaps: float) -> pa.Array:
    return pa.array([None if rng.random() < gaps else float(v) for v in values])


def make_table(columns: int = 20, seed: int = 0) -> Table:
    """A seeded classification table of ``columns`` columns (20, or 4 to 8): numbers (some with
    gaps), counts, categories of 3 to 40 levels and a date; three classes from a mix of
    them with noise."""
    rng = np.random.default_rng(seed)
    numeric = 13 if columns == 20 else columns - 2
    signal = rng.normal(0, 1, (ROWS, numeric))
    island = rng.choice(["Biscoe", "Dream", "Torgersen"], ROWS)
    text: dict[str, pa.Array] = {
        f"x{i:02d}": _numbers(signal[:, i], rng, 0.05 if i % 3 == 0 else 0.0)
        for i in range(numeric)
    }
    text["island"] = pa.array([v if rng.random() > 0.05 else "" for v in island.tolist()])
    days = rng.integers(0, 3650, ROWS)
    text["when"] = pa.array(
        [str(np.datetime64("2014-01-01") + np.timedelta64(int(d), "D")) for d in days]
    )
    score = signal[:, 0] + 0.8 * signal[:, 1] * signal[:, 2] + (island == "Dream") * 0.9
    score += (days > 1800) * 0.5
    if columns == 20:
        counts = rng.integers(0, 12, (ROWS, 2))
        text["visits"] = pa.array(counts[:, 0].astype(float))
        text["items"] = pa.array(counts[:, 1].astype(float))
        for name, levels in (("colour", 5), ("region", 12), ("store", 40)):
            codes = rng.zipf(1.5, ROWS) % levels
            text[name] = pa.array([f"{name[0]}{int(c)}" for c in codes])
            score += (codes == 1) * 0.3
        score += 0.1 * counts[:, 0] - 0.5 * np.tanh(signal[:, 5] * signal[:, 6])
    score += rng.normal(0, 0.5, ROWS)
    classes = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])).astype(np.int64)
    typed = [type_column(name, values, None, lambda row: row + 2) for name, values in text.items()]
    encoding = fit_encoding(typed)
    raw = plain({c.name: c.numbers if c.numbers is not None else c.text for c in typed})
    if len(encoding.columns) != columns:
        raise RuntimeError(f"the table encodes {len(encoding.columns)} columns, not {columns}")
    return Table(encoding, raw, encode(encoding, raw), classes)


def fitted(family: str, table: Table) -> Fitted:
    """A model of ``family`` on the fitting rows: the table families with their defaults
    (what a search starts from), an MLP of two 64-wide layers, or 'average' (the MLP and
    the GBDT averaged, as a search's ensemble of two families)."""
    x, y = table.features[:TRAIN], table.classes[:TRAIN]
    cut = TRAIN - VALID
    outputs = len(LABELS)
    if family == "average":
        members = [fitted("mlp", table), fitted("gbdt", table)]
        return MixedAverage(members)  # type: ignore[arg-type]
    if family == "mlp":
        network = Network(
            MLPConfig(n_inputs=x.shape[1], n_outputs=outputs, hidden=MLP_HIDDEN), True, seed=0
        )
        train(
            network,
            TrainData(x[:cut], y[:cut], x[cut:], y[cut:]),
            TrainConfig(epochs=MLP_EPOCHS, learning_rate=3e-3),
        )
        return network
    data = TableData(x[:cut], y[:cut], x[cut:], y[cut:])
    return fit_table_model(family, {}, data, outputs, FitOptions())


@dataclass(frozen=True)
class Version:
    """A registered version and what the benchmark needs of it in this process."""

    name: str
    family: str
    model: Fitted
    onnx: bytes  # the served graph (preprocessing in front)
    signature: Signature
    record: ExplainRecord
    data: ExplainData


def register(settings: Settings, table: Table, family: str, name: str) -> Version:
    """Fit, export behind the preprocessing, prepare explanations and register, as a
    search's finish does (``app.search.finalize``)."""
    model = fitted(family, table)
    store = get_store(settings)
    encoding = table.encoding
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.onnx"
        export_model(model, path)
        onnx, _ = with_rows(path.read_bytes(), encoding, table.raw)
        path.write_bytes(onnx)
        signature = Signature.of_columns(
            encoding,
            used=encoding.sources_of(None),
            output_name=OUTPUT_NAME,
            width=width_of(model)[1],
        )
        metrics = stored_explanations(
            store,
            f"bench/{name}",
            model,
            path,
            signature,
            background=table.feeds(slice(0, TRAIN)),
            held_out=table.feeds(slice(TRAIN, None)),
            labels=LABELS,
            encoding=encoding,
            threads=settings.ort_threads,
        )
        artifact = store.put_file(f"bench/{name}/model.onnx", path)
    record = ExplainRecord.of(metrics)
    if record is None:
        raise RuntimeError(f"{name}: no explanations were prepared (see the log)")
    with session_scope(settings.database_url) as session:
        register_version(
            session,
            name,
            VersionDraft(
                task="classification",
                source="search",
                artifact=artifact,
                signature=signature,
                metrics=metrics,
                class_labels=LABELS,
                config=VersionConfig(family=family, encoding=encoding),
            ),
        )
    data = ExplainData.from_bytes(store.read_bytes(record.key, record.sha256))
    return Version(name, family, model, onnx, signature, record, data)

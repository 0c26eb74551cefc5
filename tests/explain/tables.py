"""Versions of every table family, made as a search's finish makes them (exported behind
the table's preprocessing, their explanation file and importance made by
``app.search.explanations``), registered in the test's registry, for the explain tests."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.contracts.encoding import TableEncoding
from app.contracts.networks import MLPConfig
from app.contracts.signature import Signature, VersionConfig
from app.core.config import Settings
from app.core.db import session_scope
from app.preprocessing.encode import encode, feeds, plain
from app.preprocessing.fit import fit_encoding
from app.preprocessing.graph import with_rows
from app.registry.service import VersionDraft, register_version
from app.search.explanations import stored_explanations
from app.storage import get_store
from app.training.ensemble import Fitted, export_model, width_of
from app.training.export import OUTPUT_NAME
from app.training.models import Network
from app.training.table_models import FitOptions, TableData, fit_table_model
from app.training.train import TrainConfig, TrainData, train
from tests.preprocessing.test_encoding import typed_table

LABELS = ["low", "mid", "high"]
CUT = 360  # training rows before it, held-out rows after


@dataclass(frozen=True)
class Table:
    """A typed table: its encoding, raw columns, features and targets."""

    encoding: TableEncoding
    raw: dict[str, Any]
    features: np.ndarray
    classes: np.ndarray
    values: np.ndarray

    def feeds(self, rows: slice) -> dict[str, np.ndarray]:
        part = {name: values[rows] for name, values in plain(self.raw).items()}
        return feeds(self.encoding, part, self.encoding.sources_of(None))

    def records(self, rows: slice) -> list[dict[str, Any]]:
        part = plain(self.raw)
        out = []
        for index in range(*rows.indices(len(self.classes))):
            record: dict[str, Any] = {}
            for name, values in part.items():
                value = values[index]
                if isinstance(value, str):
                    record[name] = value or None
                else:
                    record[name] = None if np.isnan(value) else float(value)
            out.append(record)
        return out


def make_table() -> Table:
    columns = typed_table(rows=480, seed=4)
    encoding = fit_encoding(columns)
    raw = {c.name: c.numbers if c.numbers is not None else c.text for c in columns}
    features = encode(encoding, raw)
    island = np.asarray(raw["island"].to_pylist())  # type: ignore[union-attr]
    length = np.nan_to_num(np.asarray(raw["length"]), nan=40.0)
    classes = ((island == "Dream").astype(int) + (length > 41).astype(int)).astype(np.int64)
    values = (length / 10 + (island == "Biscoe")).astype(np.float32)
    return Table(encoding, raw, features, classes, values)


def fitted(family: str, table: Table, task: str) -> Fitted:
    """A model of ``family`` on the table's training rows."""
    target = (table.classes if task == "classification" else table.values)[:CUT]
    outputs = len(set(table.classes.tolist())) if task == "classification" else 1
    x = table.features[:CUT]
    if family == "mlp":
        network = Network(
            MLPConfig(n_inputs=x.shape[1], n_outputs=outputs, hidden=(16,)),
            task == "classification",
            seed=0,
        )
        train(
            network,
            TrainData(x[:300], target[:300], x[300:], target[300:]),
            TrainConfig(epochs=5, learning_rate=3e-3),
        )
        return network
    params: dict[str, Any] = {"gbdt_rounds": 30} if family == "gbdt" else {}
    if family == "forest":
        params = {"forest_trees": 10}
    data = TableData(x[:300], target[:300], x[300:], target[300:])
    return fit_table_model(family, params, data, outputs, FitOptions())


def register_family(
    settings: Settings,
    table: Table,
    family: str,
    task: str,
    name: str,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Export, prepare explanations and register; the version's metrics."""
    model = fitted(family, table, task)
    store = get_store(settings)
    encoding = table.encoding
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.onnx"
        export_model(model, path)
        onnx, _ = with_rows(path.read_bytes(), encoding, plain(table.raw))
        path.write_bytes(onnx)
        signature = Signature.of_columns(
            encoding,
            used=encoding.sources_of(None),
            output_name=OUTPUT_NAME,
            width=width_of(model)[1],
        )
        if task == "classification":
            labels = labels or LABELS
        metrics = stored_explanations(
            store,
            f"test/{name}",
            model,
            path,
            signature,
            background=table.feeds(slice(0, CUT)),
            held_out=table.feeds(slice(CUT, None)),
            labels=labels,
            encoding=encoding,
            threads=1,
        )
        artifact = store.put_file(f"test/{name}/model.onnx", path)
    with session_scope(settings.database_url) as session:
        register_version(
            session,
            name,
            VersionDraft(
                task=task,
                source="search",
                artifact=artifact,
                signature=signature,
                metrics=metrics,
                class_labels=labels,
                config=VersionConfig(family=family, encoding=encoding),
            ),
        )
    return metrics

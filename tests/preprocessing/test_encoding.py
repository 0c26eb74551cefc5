"""The preprocessing's two forms agree: numpy (what training sees) and the ONNX graph in
front of the served network (what onnxruntime alone runs), on ordinary rows, gaps, values
never seen and text that is not a date; dates' parts match Python's calendar."""

from __future__ import annotations

import datetime

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
from onnx import TensorProto, helper

from app.contracts.encoding import CategoricalColumn, DatetimeColumn, TableEncoding
from app.preprocessing.columns import SourceColumn, type_column
from app.preprocessing.encode import date_parts, encode, feeds, stress_rows
from app.preprocessing.fit import fit_encoding
from app.preprocessing.graph import attach, detach


def typed_table(rows: int = 400, seed: int = 0) -> list[SourceColumn]:
    rng = np.random.default_rng(seed)
    island = rng.choice(["Biscoe", "Dream", "Torgersen", ""], rows).tolist()
    length = [f"{v:.2f}" if rng.random() > 0.1 else "" for v in rng.normal(40, 5, rows)]
    count = [str(int(v)) for v in rng.integers(0, 9, rows)]
    many = [f"v{int(v)}" for v in rng.zipf(1.6, rows) % 400]
    stamps = [
        f"20{rng.integers(10, 30)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
        + (f" {rng.integers(0, 24):02d}:05" if rng.random() < 0.5 else "")
        if rng.random() > 0.1
        else ""
        for _ in range(rows)
    ]
    values = {"island": island, "length": length, "count": count, "many": many, "when": stamps}
    return [
        type_column(name, pa.array(text), None, lambda row: row + 2)
        for name, text in values.items()
    ]


def identity_network(width: int) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "network",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", width])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


@pytest.fixture(scope="module")
def table() -> tuple[TableEncoding, dict[str, object]]:
    columns = typed_table()
    encoding = fit_encoding(columns)
    raw = {c.name: c.numbers if c.numbers is not None else c.text for c in columns}
    return encoding, raw


def test_types_and_encodings_are_what_the_values_say(
    table: tuple[TableEncoding, dict[str, object]],
) -> None:
    encoding, _ = table
    kinds = {column.name: column.kind for column in encoding.columns}
    assert kinds == {
        "island": "categorical",
        "length": "numeric",
        "count": "numeric",
        "many": "categorical",
        "when": "datetime",
    }
    island, length, count, many, when = encoding.columns
    assert island.kind == "categorical" and island.indicator and not island.other
    assert length.kind == "numeric" and length.indicator
    assert count.kind == "numeric" and not count.indicator
    assert many.kind == "categorical" and many.other and many.frequencies is not None
    assert many.coded and not island.coded  # a code only where one-hot slots run out
    assert when.kind == "datetime" and when.hour and when.indicator
    assert len(encoding.feature_names()) == encoding.width


def test_graph_and_numpy_agree_on_stress_rows(
    table: tuple[TableEncoding, dict[str, object]],
) -> None:
    encoding, raw = table
    served = attach(identity_network(encoding.width), encoding, used=encoding.sources_of(None))
    rows = stress_rows(encoding, raw, 200)
    session = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    from_graph = session.run(None, feeds(encoding, rows))[0]
    assert from_graph.shape == (600, encoding.width)
    assert np.array_equal(from_graph, encode(encoding, rows))


def test_a_many_valued_columns_code_names_each_known_value_and_minus_one_otherwise(
    table: tuple[TableEncoding, dict[str, object]],
) -> None:
    encoding, _ = table
    many = next(c for c in encoding.columns if c.name == "many")
    assert isinstance(many, CategoricalColumn) and many.frequencies is not None
    known = sorted(many.frequencies)
    rows = {
        "island": np.array(["Dream"] * 4, dtype=object),
        "length": np.full(4, 40.0, dtype=np.float32),
        "count": np.full(4, 3.0, dtype=np.float32),
        "many": np.array([known[0], known[-1], "", "never seen"], dtype=object),
        "when": np.array(["2020-01-01"] * 4, dtype=object),
    }
    code = encoding.category_codes()
    assert len(code) == 1 and encoding.feature_names()[code[0]] == "many:code"
    assert encode(encoding, rows)[:, code[0]].tolist() == [0.0, len(known) - 1, -1.0, -1.0]
    served = attach(identity_network(encoding.width), encoding, used=encoding.sources_of(None))
    session = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    graph_codes = session.run(None, feeds(encoding, rows))[0][:, code[0]]
    assert graph_codes.tolist() == [0.0, len(known) - 1, -1.0, -1.0]


def test_an_encoding_stored_before_codes_reads_without_them(
    table: tuple[TableEncoding, dict[str, object]],
) -> None:
    encoding, _ = table
    stored = encoding.model_dump(mode="json")
    for column in stored["columns"]:
        column.pop("code", None)
    old = TableEncoding.model_validate(stored)
    assert old.category_codes() == () and old.width == encoding.width - 1


def test_unused_columns_are_not_inputs_and_read_as_zeros(
    table: tuple[TableEncoding, dict[str, object]],
) -> None:
    encoding, raw = table
    used = {"length", "when"}
    served = attach(identity_network(encoding.width), encoding, used=used)
    session = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    assert {value.name for value in session.get_inputs()} == used
    rows = stress_rows(encoding, raw, 50)
    out = session.run(None, feeds(encoding, rows, used))[0]
    expected = encode(encoding, rows)
    for column, (start, end) in zip(encoding.columns, encoding.spans(), strict=True):
        if column.name in used:
            assert np.array_equal(out[:, start:end], expected[:, start:end])
        else:
            assert not out[:, start:end].any()


def test_detach_gives_back_the_network(table: tuple[TableEncoding, dict[str, object]]) -> None:
    encoding, _ = table
    served = attach(identity_network(encoding.width), encoding, used=encoding.sources_of(None))
    network = ort.InferenceSession(detach(served, encoding), providers=["CPUExecutionProvider"])
    features = np.random.default_rng(1).normal(size=(5, encoding.width)).astype(np.float32)
    assert [value.name for value in network.get_inputs()] == ["input"]
    assert np.array_equal(network.run(None, {"input": features})[0], features)


def test_a_column_named_like_an_internal_tensor_is_fine() -> None:
    names = ("t0", "pp/features", "net/t1", "input")
    columns = [
        type_column(name, pa.array([str(i % 7) for i in range(60)]), "categorical", lambda row: row)
        for name in names
    ]
    encoding = fit_encoding(columns)
    served = attach(identity_network(encoding.width), encoding, used=set(names))
    session = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    values = np.array([["3"], ["9"]], dtype=object)
    out = session.run(None, dict.fromkeys(names, values))[0]
    assert np.array_equal(out, encode(encoding, dict.fromkeys(names, values)))
    back = ort.InferenceSession(detach(served, encoding), providers=["CPUExecutionProvider"])
    assert np.array_equal(back.run(None, {"input": out})[0], out)


@pytest.mark.parametrize(
    "text",
    [
        "1999-12-31",
        "2000-02-29T23:59:59Z",
        "2024-03-01 00:00",
        "1900-01-01",
        "2099-07-04T12:00:00+05:30",
        "2023-01-15",
    ],
)
def test_date_parts_match_the_calendar(text: str) -> None:
    column = DatetimeColumn(name="d", fill="2000-01-01", hour=True, indicator=True)
    parts, missing = date_parts(text, column)
    day = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert not missing
    assert parts == [day.year, day.month, day.day, day.isoweekday() % 7, day.hour]


def test_every_day_of_a_century_has_the_right_weekday() -> None:
    column = DatetimeColumn(name="d", fill="2000-01-01", hour=False, indicator=False)
    first = datetime.date(1950, 1, 1)
    days = [first + datetime.timedelta(days=offset) for offset in range(0, 36500, 7)]
    encoding = TableEncoding(columns=[column])
    texts = np.array([day.isoformat() for day in days], dtype=object)
    served = attach(identity_network(encoding.width), encoding, used={"d"})
    session = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    out = session.run(None, {"d": texts.reshape(-1, 1)})[0]
    assert np.array_equal(out[:, 3], [day.isoweekday() % 7 for day in days])

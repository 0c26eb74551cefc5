"""A one-tensor graph's players: named by the table it was searched on (the request log's
names), else ``input_0``, ``input_1``, ...; the explainer names them as its file does."""

from __future__ import annotations

import numpy as np

from app.contracts.signature import Signature
from app.explain.data import ExplainRecord
from app.explain.explainer import Explainer
from app.explain.players import Players
from app.explain.register import explanation_file

SIGNATURE = Signature.of_tensors(input_name="x", row_shape=(3,), output_name="y", width=1)


def test_a_tensor_is_named_by_its_table_or_by_position() -> None:
    assert Players.of(SIGNATURE, ["px0", "px1", "px2"]).names == ("px0", "px1", "px2")
    assert Players.of(SIGNATURE).names == ("input_0", "input_1", "input_2")
    assert Players.of(SIGNATURE, ["a", "b"]).names == ("input_0", "input_1", "input_2")


def test_the_explainer_names_players_as_its_file_does() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    data = explanation_file(SIGNATURE, {"x": rows}, names=["px0", "px1", "px2"])
    assert list(data.background) == ["px0", "px1", "px2"]
    record = ExplainRecord(
        key="", sha256="", method=data.method, background_rows=data.background_rows
    )
    explainer = Explainer.build(
        record, data, signature=SIGNATURE, labels=None, encoding=None, uploaded=False
    )
    assert explainer.players.names == ("px0", "px1", "px2")

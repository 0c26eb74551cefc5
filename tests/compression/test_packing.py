"""Packed weights decode to exactly what was coded, in onnxruntime: every index width,
dense and sparse (with gaps too long for their bits), with per-channel scales on rows or
on columns; and the file shrinks by what the bits promise."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.compression.packing import (
    CodedWeight,
    bits_for,
    match_initializer,
    pack,
    pack_weights,
    sparse_entries,
    unpack,
)
from app.evaluation.sessions import open_session


def matmul_model(weight: np.ndarray) -> bytes:
    """y = x @ W for a [rows, cols] weight held as an initializer named 'W'."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, weight.shape[1]])],
        [numpy_helper.from_array(weight.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return model.SerializeToString()


def decoded_through_onnxruntime(onnx_bytes: bytes, rows: int) -> np.ndarray:
    session = open_session(onnx_bytes, 1)
    return np.asarray(session.run(["y"], {"x": np.eye(rows, dtype=np.float32)})[0])


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_pack_and_unpack_round_trip(bits: int) -> None:
    values = np.random.default_rng(bits).integers(0, 1 << bits, size=1001)
    assert np.array_equal(unpack(pack(values, bits), bits, len(values)), values)
    assert len(pack(values, bits)) == -(-1001 * bits // 8)


def test_sparse_entries_mark_long_gaps_with_fillers() -> None:
    indices = np.zeros(100, dtype=np.int64)
    indices[[3, 4, 60, 99]] = [2, 1, 3, 2]
    gaps, codes = sparse_entries(indices, zero=0, gap_bits=4)
    positions = np.cumsum(gaps + 1) - 1
    rebuilt = np.zeros(100, dtype=np.int64)
    rebuilt[positions] = codes
    assert np.array_equal(rebuilt, indices) and gaps.max() <= 15
    assert (codes == 0).sum() > 0  # fillers were needed for the gap of 55


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("density", [1.0, 0.05])
@pytest.mark.parametrize("scaled", [False, True])
def test_onnxruntime_decodes_exactly_what_was_coded(
    bits: int, density: float, scaled: bool
) -> None:
    rng = np.random.default_rng(bits * 7)
    shape = (120, 40)
    book = np.sort(rng.normal(size=1 << bits)).astype(np.float32)
    if density < 1:
        book[0] = 0.0
    indices = rng.integers(1 if density < 1 else 0, 1 << bits, size=shape)
    if density < 1:
        indices[rng.random(shape) > density] = 0
    scale = rng.uniform(0.5, 2.0, size=shape[1]).astype(np.float32) if scaled else None
    coded = CodedWeight(indices, book, scale, axis=1)
    packed, summary = pack_weights(matmul_model(coded.decoded()), {"W": coded})
    got = decoded_through_onnxruntime(packed, shape[0])
    np.testing.assert_allclose(got, coded.decoded(), rtol=1e-6, atol=1e-7)
    if density < 1 and bits >= 2:
        assert summary["sparse_tensors"] == 1
    assert len(packed) < len(matmul_model(coded.decoded()))


def test_four_bit_weights_take_an_eighth_of_the_bytes() -> None:
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 16, size=(400, 300))
    coded = CodedWeight(indices, np.linspace(-1, 1, 16).astype(np.float32))
    plain = matmul_model(coded.decoded())
    packed, summary = pack_weights(plain, {"W": coded})
    assert summary["coded_bytes"] == 400 * 300 // 2
    assert len(packed) < len(plain) / 7.5


def test_an_exported_weight_is_found_transposed_and_scaled() -> None:
    rng = np.random.default_rng(3)
    book = np.array([-1.0, 1.0], dtype=np.float32)
    indices = rng.integers(0, 2, size=(8, 5))  # torch's [out, in]
    scale = rng.uniform(0.1, 1.0, size=8).astype(np.float32)
    stored = (book[indices] * scale[:, None]).T  # a MatMul holds [in, out]
    model = onnx.load_model_from_string(matmul_model(stored))
    name, coded = match_initializer(model, book, indices, set()) or ("", None)
    assert name == "W" and coded is not None and coded.axis == 1
    np.testing.assert_allclose(coded.decoded(), stored, rtol=1e-6)
    other = indices.copy()
    other[0, 0] = 1 - other[0, 0]  # one sign that differs: not this tensor
    assert match_initializer(model, book, other, set()) is None


def test_bits_for_refuses_more_than_256_values() -> None:
    assert [bits_for(n) for n in (2, 3, 4, 5, 16, 17, 256)] == [1, 2, 2, 4, 4, 8, 8]
    with pytest.raises(ValueError, match="more than 8 bits"):
        bits_for(257)

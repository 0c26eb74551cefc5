"""A model's footprint (``app.evaluation.footprint``, ``app.evaluation.energy``): energy from
RAPL's counters where they can be read (a fake powercap folder here), else the CPU-time
estimate at the configured watts per core, labelled as such; the memory one run takes,
measured in a child process, is what the graph's intermediate tensors hold."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.core.config import SettingsError, load_settings
from app.evaluation.energy import EnergySettings, measure_energy, rapl_counters, spent_uj
from app.evaluation.footprint import CLEAR_REFS, Footprint, measure_file


def fake_powercap(root: Path, packages: dict[str, int], wraps_at: int = 1_000_000) -> Path:
    """A powercap folder with one ``intel-rapl:N`` per package (and a sub-domain of the
    first, which a reader must not add: the package counts it already)."""
    for name, value in packages.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "energy_uj").write_text(f"{value}\n")
        (folder / "max_energy_range_uj").write_text(f"{wraps_at}\n")
    core = root / "intel-rapl:0:0"
    core.mkdir()
    (core / "energy_uj").write_text("5\n")
    return root


def advance(root: Path, values: dict[str, int]) -> None:
    for name, value in values.items():
        (root / name / "energy_uj").write_text(f"{value}\n")


def test_rapl_counters_of_every_package_are_summed_across_a_wrap(tmp_path: Path) -> None:
    powercap = fake_powercap(tmp_path, {"intel-rapl:0": 100, "intel-rapl:1": 999_000})
    assert [c.path.parent.name for c in rapl_counters(powercap)] == ["intel-rapl:0", "intel-rapl:1"]

    def run() -> int:  # 2 J on package 0, 0.5 J on package 1 (its counter wraps)
        advance(powercap, {"intel-rapl:0": 2_000_100, "intel-rapl:1": 499_000})
        return 4_000

    energy = measure_energy(run, EnergySettings(powercap, watts_per_core=10.0))
    assert (energy.source, energy.watts_per_core) == ("rapl", None)
    assert energy.joules == pytest.approx(2.5)
    assert energy.mj_per_1k_rows == pytest.approx(625.0)  # 2.5 J over 4,000 rows
    assert spent_uj(10, 4, wraps_at=100) == 94


def test_without_readable_counters_energy_is_the_labelled_estimate(tmp_path: Path) -> None:
    half_read = fake_powercap(tmp_path / "half", {"intel-rapl:0": 1, "intel-rapl:1": 2})
    (half_read / "intel-rapl:1" / "energy_uj").unlink()  # all packages or none
    for powercap in (tmp_path / "absent", half_read):
        assert rapl_counters(powercap) == []

        def burn() -> int:
            sum(index * index for index in range(200_000))
            return 1_000

        energy = measure_energy(burn, EnergySettings(powercap, watts_per_core=3.5))
        assert (energy.source, energy.watts_per_core) == ("estimate", 3.5)
        assert energy.joules > 0


@pytest.mark.parametrize("hostile", ["fifo", "device", "huge", "negative", "text"])
def test_a_counter_that_is_not_a_plain_number_is_not_read(tmp_path: Path, hostile: str) -> None:
    """A FIFO (would block), a device (never ends), a file longer than a counter, a negative
    or non-numeric value: the counters are unreadable and energy is the estimate."""
    powercap = fake_powercap(tmp_path / "p", {"intel-rapl:0": 1})
    counter = powercap / "intel-rapl:0" / "energy_uj"
    counter.unlink()
    if hostile == "fifo":
        os.mkfifo(counter)
    elif hostile == "device":
        counter.symlink_to("/dev/zero")
    else:
        counter.write_text({"huge": "1" * 4096, "negative": "-5", "text": "many"}[hostile])
    assert rapl_counters(powercap) == []


def test_a_counter_past_its_stated_range_counts_nothing() -> None:
    assert spent_uj(500, 10, wraps_at=100) == 0


def test_the_watts_per_core_setting_is_read_and_checked(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, cpu_watts_per_core=4.5, powercap_dir=tmp_path)
    assert EnergySettings.of(settings) == EnergySettings(tmp_path, 4.5)
    assert load_settings(data_dir=tmp_path).cpu_watts_per_core == 10.0
    with pytest.raises(SettingsError, match="KILN_CPU_WATTS_PER_CORE"):
        load_settings(data_dir=tmp_path, cpu_watts_per_core=-1)


def two_layers(width: int, hidden: int) -> bytes:
    """x @ W1 -> relu -> @ W2: a run on n rows holds an [n, hidden] float32 tensor, two
    where onnxruntime cannot run the relu in place."""
    generator = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(generator.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("w1", (width, hidden)), ("w2", (hidden, 2)))
    ]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "two_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model.SerializeToString()


def test_a_run_takes_the_memory_its_tensors_hold_in_a_child_process(tmp_path: Path) -> None:
    footprint = measure_file(
        two_layers(100, 1024),
        {"x": np.ones((3, 100), dtype=np.float32)},
        threads=1,
        energy=EnergySettings(tmp_path, watts_per_core=7.0),
    )
    assert (footprint.energy_source, footprint.energy_watts_per_core) == ("estimate", 7.0)
    assert footprint.energy_mj_per_1k_rows > 0
    assert footprint.peak_memory_mb is not None and footprint.peak_memory_b256_mb is not None
    assert footprint.peak_memory_mb < 0.1  # two 4 KB rows of 1,024 floats: pages of them
    tensor_mb = 256 * 1024 * 4 / 2**20  # h at 256 rows: 1 MB (and r, unless in place)
    if CLEAR_REFS.exists():  # the peak reset: exact to a few pages
        assert tensor_mb - 0.05 <= footprint.peak_memory_b256_mb <= 2 * tensor_mb + 0.25
    stored = footprint.metrics()
    assert stored["energy_source"] == "estimate" and Footprint.of_metrics(stored) == footprint
    assert Footprint.of_metrics({"accuracy": 0.9}) is None

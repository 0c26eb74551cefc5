"""Checking an uploaded ONNX model, in a subprocess the gateway can afford to lose
(``app.registry.probe_child``): the gateway never parses an uploaded file itself, so a file
crafted to cost memory or time to read costs the child, within its limits. The parent adds
the wall-clock limit (``KILN_PROBE_TIMEOUT_S``) and turns the child's one JSON line into a
``ProbeResult`` or an InvalidInput naming the stage that failed."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn

from pydantic import ValidationError

from app.contracts.signature import Signature, VersionConfig
from app.core.errors import InvalidInput
from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import Footprint
from app.registry.probe_child import PROBE_OUTCOME, RANDOM_ROWS, ProbeFailed, ProbeMeasured

_LOAD_PROBLEMS = {
    "NotImplemented": "it uses an operator or data type that onnxruntime's CPU provider does "
    "not implement",
    "InvalidGraph": "onnxruntime found the graph invalid (types or shapes do not fit)",
    "InvalidProtobuf": "onnxruntime could not read the file",
}
_STAGE_ROWS = {
    "zeros": "a zero input row",
    "random": f"{RANDOM_ROWS} random input rows",
    "extremes": "rows at float32's extremes (±3.4e38)",
    "batches": "batches of up to 64 rows",
}
MB = 1024 * 1024

GraphLabel = Literal["bounded", "sandboxed"]


@dataclass(frozen=True)
class ProbeResult:
    """What checking and running the model taught: the signature it declares, its trainable
    form (or why it has none), its latency at batch 1, the memory its loaded session holds,
    the memory one more row of a request takes and the seconds one row takes in a batch
    (None: too little to measure), and whether static analysis proved its cost linear in
    the rows ("bounded": it may run in the gateway) or not ("sandboxed"), and why, and its
    footprint (``app.evaluation.footprint``; None where a run failed while measuring it)."""

    signature: Signature
    n_params: int
    form: VersionConfig
    latency_p50_ms: float
    load_bytes: int
    bytes_per_row: int | None
    graph_class: GraphLabel
    graph_class_reason: str
    rows_independent: bool
    seconds_per_row: float | None
    footprint: Footprint | None  # memory a run takes, energy per 1,000 rows


def _child_environment() -> dict[str, str]:
    """The gateway's environment without ModelKiln's settings (credentials live there), and
    a home that does not exist (onnxruntime keeps a cache under ~/.cache otherwise)."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("KILN_")}
    return {**kept, "HOME": "/nonexistent", "XDG_CACHE_HOME": "/nonexistent"}


def probe_model(
    path: Path,
    *,
    threads: int,
    memory_mb: int,
    timeout_s: float,
    run_timeout_s: float,
    model_memory_mb: int,
    energy: EnergySettings,
) -> ProbeResult:
    """Run the probe child on ``path``; InvalidInput names the stage that failed, or the
    memory the loaded model holds past ``model_memory_mb`` (KILN_UPLOAD_MODEL_MEMORY_MB)."""
    with tempfile.TemporaryDirectory(prefix="kiln-probe-") as empty:
        try:
            finished = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "app.registry.probe_child",
                    str(path.resolve()),
                    str(threads),
                    str(memory_mb),
                    repr(run_timeout_s),
                    str(energy.powercap_dir),
                    repr(energy.watts_per_core),
                ],
                cwd=empty,
                env=_child_environment(),
                capture_output=True,
                timeout=timeout_s,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise InvalidInput(
                f"model took longer than {timeout_s:g} s to read, load, run on test "
                "rows and time (KILN_PROBE_TIMEOUT_S)"
            ) from None
    outcome = _outcome(finished, memory_mb, run_timeout_s)
    declared = outcome.declared
    width = declared.width
    expected = [[1, width], [RANDOM_ROWS, width], [2, width]]
    if outcome.shapes != expected:
        given = ", ".join(
            f"{shape} for {rows}"
            for shape, rows in zip(
                outcome.shapes,
                ("one row", f"{RANDOM_ROWS}", "2 (float32's extremes)"),
                strict=False,
            )
        )
        raise InvalidInput(f"model declares output shape [batch, {width}] but gave {given}")
    load_bytes = outcome.load_bytes
    if load_bytes > model_memory_mb * MB:
        raise InvalidInput(
            f"model holds {load_bytes / MB:.0f} MB once loaded (constants onnxruntime computes "
            f"at load included), more than the {model_memory_mb} MB a loaded upload may hold "
            "(KILN_UPLOAD_MODEL_MEMORY_MB)"
        )
    bounded = outcome.graph_class == "bounded"
    return ProbeResult(
        signature=Signature.of_tensors(
            input_name=declared.input_name,
            row_shape=declared.row_shape,
            output_name=declared.output_name,
            width=width,
        ),
        n_params=declared.n_params,
        form=declared.form,
        latency_p50_ms=outcome.latency_p50_ms,
        load_bytes=load_bytes,
        bytes_per_row=outcome.bytes_per_row,
        graph_class=outcome.graph_class,
        graph_class_reason=outcome.graph_class_reason or "not classified",
        rows_independent=bounded and outcome.rows_independent,
        seconds_per_row=outcome.seconds_per_row,
        footprint=outcome.footprint,
    )


def _outcome(
    finished: subprocess.CompletedProcess[bytes], memory_mb: int, run_timeout_s: float
) -> ProbeMeasured:
    lines = finished.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        outcome = PROBE_OUTCOME.validate_json(lines[-1]) if lines else None
    except ValidationError:  # a line the child did not finish, or another process's
        outcome = None
    if finished.returncode != 0 or outcome is None:
        raise InvalidInput(
            f"model could not be checked: reading, loading or running it used more than "
            f"{memory_mb} MB (KILN_PROBE_MEMORY_MB), or crashed"
        )
    if isinstance(outcome, ProbeMeasured):
        return outcome
    _refuse(outcome, memory_mb, run_timeout_s)


def _refuse(failed: ProbeFailed, memory_mb: int, run_timeout_s: float) -> NoReturn:
    """InvalidInput naming the stage the probe failed at, never the child's raw text."""
    stage, kind = failed.stage, failed.kind
    if stage == "refused":  # our own checks of the file as data: their message as it is
        raise InvalidInput(failed.detail or "model refused")
    if stage == "checker":
        raise InvalidInput(f"ONNX checker rejected the model: {failed.detail or ''}")
    if stage == "memory":
        raise InvalidInput(
            f"model needed more than {memory_mb} MB (KILN_PROBE_MEMORY_MB) to run on test rows"
        )
    if stage == "load":
        problem = _LOAD_PROBLEMS.get(kind, "onnxruntime cannot load it on CPU")
        raise InvalidInput(f"model cannot be served: {problem}")
    if stage == "deadline":
        rows = _STAGE_ROWS.get(str(failed.rows), "test rows")
        raise InvalidInput(
            f"model did not finish one run on {rows} within {run_timeout_s:g} s "
            "(KILN_UPLOAD_RUN_TIMEOUT_S, the most one request may run it)"
        )
    rows = _STAGE_ROWS.get(str(stage), "test rows")
    raise InvalidInput(f"model fails on {rows} (onnxruntime raised {kind or 'an error'})")

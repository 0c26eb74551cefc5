"""The ONNX checks against every protobuf major that pyproject.toml allows, the newest
release of each, installed apart from the test venv (whose extras may hold protobuf back)
together with the newest onnx in pyproject.toml's range that accepts it (onnx 1.19 and
later need protobuf 6.31 or newer; before it, onnx 1.18 on protobuf 4 and 5).

protobuf 7 dropped ``FieldDescriptor.label``; the walk over nested messages used it, and
every ONNX upload answered 500 on a main install that resolved protobuf 7. Each major runs
the checks in a subprocess whose ``sys.path`` puts that release first."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

CHECKS = """
import google.protobuf, sys
from app.onnx_graphs.checks import decode_model, refuse_external_data, declared_signature
from app.core.errors import InvalidInput
from app.serving import grpc_schema
from tests.security.test_onnx_upload import (function_external, sparse_external,
                                             subgraph_external, linear_onnx)
assert google.protobuf.__version__.startswith(sys.argv[1] + "."), google.protobuf.__version__
model = decode_model(linear_onnx().SerializeToString())
refuse_external_data(model)
declared_signature(model)
for hostile in (function_external, sparse_external, subgraph_external):
    try:
        refuse_external_data(decode_model(hostile()))
    except InvalidInput as refusal:
        assert "external data" in str(refusal), refusal
    else:
        raise AssertionError(hostile.__name__ + " was not refused")
request = grpc_schema.message("ModelInferRequest")(model_name="m")
assert grpc_schema.message("ModelInferRequest").FromString(request.SerializeToString())
print("ok", google.protobuf.__version__)
"""


def dependency(name: str) -> Requirement:
    """``name``'s requirement in pyproject.toml's main dependencies."""
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        if (requirement := Requirement(line)).name == name:
            return requirement
    raise AssertionError(f"{name} is not in pyproject.toml's dependencies")


def allowed_majors() -> list[int]:
    """The protobuf majors pyproject.toml's range admits."""
    specifier = dependency("protobuf").specifier
    return [
        major for major in range(3, 30) if specifier.contains(f"{major}.999", prereleases=False)
    ]


def test_the_range_is_capped_and_holds_protobuf_7() -> None:
    assert 7 in allowed_majors() and allowed_majors()[-1] < 29


@pytest.mark.network
@pytest.mark.parametrize("major", allowed_majors())
def test_onnx_checks_on_newest_release_of_each_major(major: int, tmp_path: Path) -> None:
    target = tmp_path / f"protobuf{major}"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target),
            f"protobuf>={major},<{major + 1}",
            str(dependency("onnx")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        # .ci/run holds its own install to the test lock; this one must not be held to it.
        env={name: value for name, value in os.environ.items() if name != "PIP_CONSTRAINT"},
    )
    if install.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"pip could not install protobuf {major}: {install.stderr[-2000:]}")
        pytest.skip(f"no package index reachable for protobuf {major}: {install.stderr[-300:]}")
    run = subprocess.run(
        [sys.executable, "-c", CHECKS, str(major)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(ROOT)])},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("ok")

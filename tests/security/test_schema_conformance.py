"""Schemathesis against a live ``kiln serve``: every operation in the OpenAPI document,
with generated valid and invalid data, must answer without a 5xx and as the document
says (status codes, content types, bodies, headers). Path parameters are pinned to
resources that exist (a dataset, a finished job, a registered version with an alias, a
spare API key), so the generated requests get past 404 to the code behind it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import KilnServer, ServerFactory
from tests.helpers import blobs_csv

MAX_EXAMPLES = 8
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)


@pytest.fixture(scope="module")
def server(module_kiln_server: ServerFactory) -> Iterator[KilnServer]:
    kiln = module_kiln_server(workers=1)
    yield kiln


def _pinned(server: KilnServer) -> dict[str, object]:
    """Resources for every path parameter: each operation reaches real rows."""
    dataset_id = server.upload_dataset(blobs_csv(n_rows=60))
    with server.client() as client:
        job = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "walked",
                "search": {"max_trials": 1, "max_epochs": 1, "space": {"epochs": 1}},
            },
        )
        assert job.status_code == 202, job.text
        finished = server.wait_for_job(int(job.json()["id"]))
        assert finished["status"] == "succeeded", finished["error"]
        alias = client.put("/v1/models/walked/aliases/production", json={"version": 1})
        assert alias.status_code == 200, alias.text
        spare = client.post("/v1/keys", json={"name": "spare", "scope": "read"})
        assert spare.status_code == 201, spare.text
    return {
        "dataset_id": dataset_id,
        "job_id": finished["id"],
        "name": "walked",
        "version": 1,
        "alias": "production",
        "key_id": spare.json()["id"],
    }


def test_every_operation_answers_as_documented(server: KilnServer, tmp_path: Path) -> None:
    pinned = _pinned(server)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        + "".join(
            f'"path.{name}" = {value!r}\n'.replace("'", '"') for name, value in pinned.items()
        )
    )
    command = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert command is not None, "schemathesis is in the test extra"
    run = subprocess.run(
        [
            command,
            "--config-file",
            str(config),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {server.key}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--mode",
            "all",
            "--seed",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            # The name rules are published as patterns over printable text (character
            # classes of thousands of code points): valid, and slow for Hypothesis to draw.
            "--suppress-health-check",
            "too_slow",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    print(run.stdout[-4000:])  # the summary, with pytest -s
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    with server.client() as client:  # the server still serves
        assert client.get("/v1/models/walked/versions/1").status_code == 200
    log = server.log_path.read_text(errors="replace")
    assert server.key not in log  # keys never reach the logs
    assert "Traceback" not in run.stdout  # nor stack traces the answers

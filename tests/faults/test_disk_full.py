"""The artifact disk full, with a real full disk: the artifact store is a small tmpfs of
the test's own, filled to the last byte. An upload answers 507 naming the problem; a search
job fails with that reason and registers no version; no temporary file is left behind;
what was stored before is intact; with room again, the same job succeeds.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere the test is skipped, saying so."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import ServerFactory
from tests.helpers import blobs_csv

SEARCH = {
    "max_trials": 2,
    "max_epochs": 3,
    "validation": "holdout",
    "space": {"n_layers": 1, "width": 16, "epochs": 3, "batch_size": 16},
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "artifacts"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Write one file until the disk refuses another byte."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        chunk = b"\0" * 65536
        try:
            while True:
                out.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        try:
            while True:
                out.write(b"\0")
        except OSError:
            pass
    return filler


def stray_temporaries(disk: Path) -> list[Path]:
    return [p for p in disk.rglob(".tmp-*")]


def test_a_full_artifact_disk_fails_the_job_with_a_reason_and_stores_nothing(
    kiln_server: ServerFactory, small_disk: Path
) -> None:
    kiln = kiln_server(workers=1, KILN_ARTIFACT_URL=f"file://{small_disk}")
    dataset_id = kiln.upload_dataset(blobs_csv(n_rows=200))
    stored_before = {p: p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    filler = fill(small_disk)

    with kiln.client() as client:
        upload = client.post(
            "/v1/datasets", files={"file": ("more.csv", blobs_csv())}, data={"target": "label"}
        )
        assert upload.status_code == 507, upload.text
        assert "out of space" in upload.json()["detail"]
        assert str(small_disk) not in upload.text  # no server paths in errors
        submitted = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "no-room",
                "search": SEARCH,
            },
        )
        assert submitted.status_code == 202, submitted.text
    job = kiln.wait_for_job(int(submitted.json()["id"]), timeout=300)
    assert job["status"] == "failed", job
    assert "out of space" in job["error"], job["error"]
    with kiln.client() as client:
        assert client.get("/v1/models/no-room/versions").status_code == 404
        assert [d["id"] for d in client.get("/v1/datasets").json()["items"]] == [dataset_id]
    assert stray_temporaries(small_disk) == []
    for path, content in stored_before.items():
        assert path.read_bytes() == content

    filler.unlink()
    with kiln.client() as client:
        again = client.post(
            "/v1/jobs",
            json={
                "kind": "search",
                "dataset_id": dataset_id,
                "model_name": "no-room",
                "search": SEARCH,
            },
        )
    job = kiln.wait_for_job(int(again.json()["id"]), timeout=300)
    assert job["status"] == "succeeded", (job["error"], kiln.log_tail())
    with kiln.client() as client:
        items = client.get("/v1/models/no-room/versions").json()["items"]
    assert [v["version"] for v in items] == [1]

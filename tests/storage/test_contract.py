"""One contract for every artifact store: the local directory and S3-compatible object
storage (a real moto server on a loopback port). Whatever the store, a read returns exactly
the bytes written under the digest recorded for them, or fails."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest

from app.core.config import load_settings
from app.core.errors import ArtifactCorrupt
from app.storage import ArtifactStore, get_store
from tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, bucket_name, s3_env

StoreFactory = Callable[[str], ArtifactStore]  # a machine's name -> that machine's store


def _tamper(store: ArtifactStore, key: str, data: bytes) -> None:
    """Change an artifact's bytes behind the store's back (a disk edit, a foreign PUT)."""
    if store.url.startswith("file://"):
        path = Path(store.url.removeprefix("file://")) / key
        path.chmod(0o600)
        path.write_bytes(data)
        return
    from app.storage.s3 import S3ArtifactStore

    assert isinstance(store, S3ArtifactStore)
    client = boto3.client(
        "s3",
        endpoint_url=store.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/{key}", Body=data)


@pytest.fixture(params=["local", "s3"])
def machines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Stores of one shared artifact location, one per named 'machine' (own data dir)."""
    if request.param == "local":
        root = tmp_path / "shared-artifacts"
        env: dict[str, str] = {"KILN_ARTIFACT_URL": f"file://{root}"}
    else:
        env = s3_env(request.getfixturevalue("s3_endpoint"), bucket_name())

    def store_on(machine: str) -> ArtifactStore:
        settings = load_settings(
            data_dir=tmp_path / machine,
            **{name.removeprefix("KILN_").lower(): value for name, value in env.items()},
        )
        store = get_store(settings)
        store.ensure_ready()
        return store

    yield store_on


@pytest.fixture
def store(machines: StoreFactory) -> ArtifactStore:
    return machines("a")


def test_bytes_round_trip_with_their_digest(store: ArtifactStore) -> None:
    data = b"\x00weights\xff" * 1000
    stored = store.put_bytes("models/m/1/weights.pt", data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size_bytes == len(data)
    assert store.read_bytes("models/m/1/weights.pt", stored.sha256) == data
    assert store.local_path("models/m/1/weights.pt", stored.sha256).read_bytes() == data


def test_file_round_trip_and_empty_artifact(store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.csv"
    source.write_bytes(b"a,b\n1,2\n" * 50_000)
    stored = store.put_file("datasets/1/original.csv", source)
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert (
        store.local_path("datasets/1/original.csv", stored.sha256).read_bytes()
        == source.read_bytes()
    )
    empty = store.put_bytes("jobs/1/empty", b"", durable=False)
    assert store.read_bytes("jobs/1/empty", empty.sha256) == b""


def test_exists_delete_and_missing(store: ArtifactStore) -> None:
    assert not store.exists("reports/r.json")
    stored = store.put_bytes("reports/r.json", b"{}")
    assert store.exists("reports/r.json")
    store.delete("reports/r.json")
    assert not store.exists("reports/r.json")
    store.delete("reports/r.json")  # deleting what is gone is not an error
    with pytest.raises(FileNotFoundError, match=r"reports/r\.json"):
        store.read_bytes("reports/r.json", stored.sha256)
    with pytest.raises(FileNotFoundError, match="never/written"):
        store.local_path("never/written", "0" * 64)


@pytest.mark.parametrize(
    "key", ["../escape", "/etc/passwd", "a/../../b", "a//b", "", ".hidden", "spaces in/key", "a\\b"]
)
def test_keys_that_could_escape_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid artifact key"):
        store.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="invalid artifact key"):
        store.read_bytes(key, None)


def test_another_machine_reads_what_one_wrote(machines: StoreFactory) -> None:
    """Two data dirs (two machines' caches) over one store: nothing read depends on the
    writer's disk."""
    writer, reader = machines("writer"), machines("reader")
    stored = writer.put_bytes("models/m/2/model.onnx", b"onnx bytes" * 4096)
    assert reader.exists("models/m/2/model.onnx")
    assert reader.read_bytes("models/m/2/model.onnx", stored.sha256) == b"onnx bytes" * 4096


def test_a_tampered_artifact_is_refused(machines: StoreFactory) -> None:
    writer = machines("writer")
    data = b"the weights the registry recorded" * 100
    stored = writer.put_bytes("models/m/3/weights.pt", data)
    _tamper(writer, "models/m/3/weights.pt", b"the weights an attacker wrote" * 100)
    reader = machines("reader")  # a machine that has not read it before
    with pytest.raises(ArtifactCorrupt, match=r"models/m/3/weights\.pt"):
        reader.read_bytes("models/m/3/weights.pt", stored.sha256)
    with pytest.raises(ArtifactCorrupt, match="does not match the sha256 recorded"):
        reader.local_path("models/m/3/weights.pt", stored.sha256)


def test_a_wrong_recorded_digest_is_refused(store: ArtifactStore) -> None:
    store.put_bytes("models/m/4/model.onnx", b"abc")
    with pytest.raises(ArtifactCorrupt):
        store.read_bytes("models/m/4/model.onnx", hashlib.sha256(b"abd").hexdigest())


def test_writes_are_atomic_to_readers(store: ArtifactStore) -> None:
    """While a large artifact is written, a reader sees nothing or all of it."""
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB
    digest = hashlib.sha256(data).hexdigest()
    seen: list[str] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            try:
                seen.append("whole" if store.read_bytes("big/blob", digest) == data else "bad")
            except FileNotFoundError:
                seen.append("absent")
            except ArtifactCorrupt:
                seen.append("partial")

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        store.put_bytes("big/blob", data)
    finally:
        done.set()
        reader.join()
    assert "partial" not in seen and "bad" not in seen
    assert store.read_bytes("big/blob", digest) == data

"""What only the object store has: its local cache (bounded, self-healing, never trusted
over the bucket), its settings, its failures, and credentials that stay secret."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config import SettingsError, load_settings
from app.core.errors import ArtifactCorrupt, Unavailable
from app.storage import ArtifactCache, get_store
from app.storage.s3 import S3ArtifactStore, parse_s3_url
from tests.fixtures.servers import free_port
from tests.s3_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, bucket_name
from tests.storage.test_contract import _tamper


def _store(
    endpoint: str, data_dir: Path, *, bucket: str | None = None, cache: ArtifactCache | None = None
) -> S3ArtifactStore:
    store = S3ArtifactStore(
        f"s3://{bucket or bucket_name()}/p",
        cache=cache or ArtifactCache(data_dir / "cache", 64 << 20),
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    store.ensure_ready()
    return store


def test_cache_stays_within_its_bound(s3_endpoint: str, tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", 1 << 20, grace_s=0)
    store = _store(s3_endpoint, tmp_path, cache=cache)
    digests = [store.put_bytes(f"blob/{i}", bytes([i]) * (300 << 10)).sha256 for i in range(8)]
    for i, digest in enumerate(digests):
        assert store.read_bytes(f"blob/{i}", digest) == bytes([i]) * (300 << 10)
        assert cache.size_bytes() <= 1 << 20
    assert cache.get(digests[-1]) is not None  # the newest stays
    assert cache.get(digests[0]) is None  # the oldest went first
    assert store.read_bytes("blob/0", digests[0]) == bytes([0]) * (300 << 10)  # fetched again


def test_recently_used_files_outlive_the_bound(s3_endpoint: str, tmp_path: Path) -> None:
    """A reader may hold a path it has not opened yet: files used within the grace period
    are kept even past the bound, and go once it is over."""
    cache = ArtifactCache(tmp_path / "cache", 1 << 20, grace_s=3600)
    store = _store(s3_endpoint, tmp_path, cache=cache)
    for i in range(5):
        stored = store.put_bytes(f"blob/{i}", bytes([i]) * (300 << 10))
        store.read_bytes(f"blob/{i}", stored.sha256)
    assert cache.size_bytes() == 5 * (300 << 10)
    old = time.time() - 7200
    for folder in (tmp_path / "cache").iterdir():
        for path in folder.iterdir():
            os.utime(path, (old, old))
    cache.trim()
    assert cache.size_bytes() <= 1 << 20


def test_a_damaged_cached_copy_is_fetched_again(s3_endpoint: str, tmp_path: Path) -> None:
    store = _store(s3_endpoint, tmp_path)
    stored = store.put_bytes("models/m/1/model.onnx", b"good bytes" * 1000)
    cached = store.cache.get(stored.sha256)
    assert cached is not None
    cached.chmod(0o600)
    cached.write_bytes(b"bit rot" * 1000)
    assert store.read_bytes("models/m/1/model.onnx", stored.sha256) == b"good bytes" * 1000
    cached = store.cache.get(stored.sha256)
    assert cached is not None and cached.read_bytes() == b"good bytes" * 1000
    cached.chmod(0o600)
    cached.write_bytes(b"bit rot again" * 1000)
    path = store.local_path("models/m/1/model.onnx", stored.sha256)
    assert path.read_bytes() == b"good bytes" * 1000


def test_replaced_in_the_bucket_is_refused_even_with_a_good_cached_copy(
    s3_endpoint: str, tmp_path: Path
) -> None:
    store = _store(s3_endpoint, tmp_path)
    stored = store.put_bytes("models/m/2/model.onnx", b"recorded" * 100)
    assert store.read_bytes("models/m/2/model.onnx", stored.sha256) == b"recorded" * 100
    _tamper(store, "models/m/2/model.onnx", b"replaced" * 100)
    with pytest.raises(ArtifactCorrupt):
        store.read_bytes("models/m/2/model.onnx", stored.sha256)


def test_an_unreachable_store_is_a_clear_503(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = S3ArtifactStore(
        "s3://kiln-down/p",
        cache=ArtifactCache(tmp_path / "c", 1 << 20),
        endpoint_url=dead,
        region="us-east-1",
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
    )
    with pytest.raises(Unavailable, match="s3://kiln-down/p cannot be reached"):
        store.ensure_ready()
    with pytest.raises(Unavailable, match=r"failed to store 'a/b'.*nothing was changed"):
        store.put_bytes("a/b", b"x")
    with pytest.raises(Unavailable, match="failed to read 'a/b'"):
        store.read_bytes("a/b", None)


def test_a_missing_bucket_is_created_once(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = bucket_name()
    first = _store(s3_endpoint, tmp_path / "one", bucket=bucket)
    first.put_bytes("k", b"v")
    second = _store(s3_endpoint, tmp_path / "two", bucket=bucket)  # already there: kept
    assert second.exists("k")


def test_credentials_are_never_logged_or_shown(
    s3_endpoint: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        artifact_url=f"s3://{bucket_name()}/x",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=ACCESS_KEY_ID,
        s3_secret_access_key=SECRET_ACCESS_KEY,
    )
    assert SECRET_ACCESS_KEY not in repr(settings) and SECRET_ACCESS_KEY not in str(settings)
    assert SECRET_ACCESS_KEY not in settings.model_dump_json()
    store = get_store(settings)
    assert SECRET_ACCESS_KEY not in repr(store)
    with caplog.at_level(logging.DEBUG):
        store.ensure_ready()
        stored = store.put_bytes("k/v", b"value")
        store.read_bytes("k/v", stored.sha256)
        with pytest.raises(FileNotFoundError) as missing:
            store.read_bytes("k/none", None)
    assert caplog.records  # botocore did log, at DEBUG
    assert SECRET_ACCESS_KEY not in caplog.text
    assert SECRET_ACCESS_KEY not in str(missing.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://Bad_Bucket/x", "S3 bucket name 'Bad_Bucket' is not valid"),
        ("s3://key:secret@bucket/x", "credentials do not belong in the URL"),
        ("s3://bucket/../x", "S3 prefix '../x' is not valid"),
        ("ftp://host/x", "expected file://PATH or s3://BUCKET"),
    ],
)
def test_bad_store_urls_are_named(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=f"KILN_ARTIFACT_URL: .*{message}") as error:
        load_settings(data_dir=tmp_path, artifact_url=url)
    assert "secret" not in str(error.value) or "credentials" in str(error.value)


@settings(max_examples=300, deadline=None)
@given(rest=st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=80))
def test_any_s3_url_is_accepted_whole_or_refused_naming_the_setting(rest: str) -> None:
    """Whatever follows s3://, settings either take it (and the store can parse it, with
    no credentials inside) or refuse it with KILN_ARTIFACT_URL named."""
    url = f"s3://{rest}"
    try:
        loaded = load_settings(data_dir=Path("/tmp/kiln-fuzz"), artifact_url=url)
    except SettingsError as error:
        assert "KILN_ARTIFACT_URL" in str(error)
        return
    bucket, prefix = parse_s3_url(loaded.artifact_url)
    assert bucket and "@" not in bucket and ":" not in bucket
    assert ".." not in prefix.split("/")


def test_partial_downloads_of_killed_processes_are_removed(
    s3_endpoint: str, tmp_path: Path
) -> None:
    """A process killed mid-download leaves a partial file in the cache; the next start
    (``remove_orphans``) deletes it, and keeps a live process's and the cached files."""
    import subprocess

    from app.core.scratch import owner_prefix

    cache = ArtifactCache(tmp_path / "cache", 64 << 20)
    store = _store(s3_endpoint, tmp_path, cache=cache)
    stored = store.put_bytes("kept.bin", b"kept")
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = cache.root / f"{owner_prefix('.part', finished.pid)}abc"
    live = cache.root / f"{owner_prefix('.part')}def"
    for path in (dead, live):
        path.write_bytes(b"half")
    assert store.remove_orphans() == 1
    assert not dead.exists() and live.exists()
    assert store.read_bytes("kept.bin", stored.sha256) == b"kept"

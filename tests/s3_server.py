"""A real S3-compatible HTTP server for tests: moto's standalone server in a child process,
on a loopback port. Each test makes its own bucket."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.fixtures.servers import free_port, stop_process

# moto's FakeKey.etag reads the object's buffer without the lock its value getter holds,
# so a GET racing a PUT's first etag (which real S3 never exposes) could read a partial body
# through the shared file position: the server runs with etag under that lock too.
MOTO_WITH_LOCKED_ETAG = """
import sys
from moto.s3.models import FakeKey
from moto.server import main

unlocked = FakeKey.etag.fget

def etag(key):
    with key.lock:
        return unlocked(key)

FakeKey.etag = property(etag)
main(sys.argv[1:])
"""
ACCESS_KEY_ID = "kiln-test-key"
SECRET_ACCESS_KEY = "kiln-test-secret-5f1c2a9e"


@contextmanager
def s3_server(log_dir: Path) -> Iterator[str]:
    """Run ``moto.server`` until the block ends; yields its endpoint URL."""
    port = free_port()
    log = (log_dir / f"moto-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", MOTO_WITH_LOCKED_ETAG, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto server did not start: {(log_dir / f'moto-{port}.log').read_text()}"
                    ) from None
                time.sleep(0.2)
        yield endpoint
    finally:
        stop_process(process, grace_s=10)
        log.close()


def bucket_name() -> str:
    return f"kiln-{uuid.uuid4().hex[:12]}"


def s3_env(endpoint: str, bucket: str, prefix: str = "artifacts") -> dict[str, str]:
    """What a ``kiln`` process needs to use the bucket as its artifact store."""
    return {
        "KILN_ARTIFACT_URL": f"s3://{bucket}/{prefix}",
        "KILN_S3_ENDPOINT_URL": endpoint,
        "KILN_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "KILN_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
    }

"""Artifact stores behind one interface, picked by the URL's scheme (file:// or s3://)."""

from __future__ import annotations

import functools
from pathlib import Path

from app.core.config import Settings
from app.storage.base import OUT_OF_SPACE_ERRNOS, ArtifactStore, StoredArtifact
from app.storage.cache import ArtifactCache
from app.storage.local import LocalArtifactStore

__all__ = [
    "OUT_OF_SPACE_ERRNOS",
    "ArtifactCache",
    "ArtifactStore",
    "LocalArtifactStore",
    "StoredArtifact",
    "get_store",
]


def get_store(settings: Settings) -> ArtifactStore:
    """The artifact store ``settings`` name (one per process and configuration)."""
    return _store(
        settings.artifact_url,
        settings.data_dir,
        settings.artifact_cache_bytes,
        settings.s3_endpoint_url,
        settings.s3_region,
        settings.s3_access_key_id,
        settings.s3_secret_access_key.get_secret_value(),
    )


@functools.lru_cache(maxsize=8)
def _store(
    url: str,
    data_dir: Path,
    cache_bytes: int,
    endpoint_url: str,
    region: str,
    access_key_id: str,
    secret_access_key: str,
) -> ArtifactStore:
    if url.startswith("file://"):
        return LocalArtifactStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        from app.storage.s3 import S3ArtifactStore  # boto3 only where S3 is used

        return S3ArtifactStore(
            url,
            cache=ArtifactCache(data_dir / "cache" / "artifacts", cache_bytes),
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
        )
    raise ValueError(f"unsupported artifact store URL {url!r}")

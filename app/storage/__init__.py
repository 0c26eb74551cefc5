"""Artifact stores behind one interface, registered by the URL's scheme (``STORES``)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from app.core.config import Settings
from app.storage.base import (
    OUT_OF_SPACE_ERRNOS,
    ArtifactStore,
    StoredArtifact,
    StoreOptions,
)
from app.storage.cache import ArtifactCache
from app.storage.local import LocalArtifactStore

__all__ = [
    "OUT_OF_SPACE_ERRNOS",
    "STORES",
    "ArtifactCache",
    "ArtifactStore",
    "LocalArtifactStore",
    "StoreOptions",
    "StoredArtifact",
    "get_store",
]

StoreClass = Callable[[], type[ArtifactStore]]  # imports a store's module when first used


def _local_store() -> type[ArtifactStore]:
    return LocalArtifactStore


def _s3_store() -> type[ArtifactStore]:
    from app.storage.s3 import S3ArtifactStore  # boto3 only where S3 is used

    return S3ArtifactStore


# The table of stores: a URL scheme (without "://") -> its store class, each class serving
# the schemes it declares (tests/storage checks the two agree). A new store is a module
# with an ArtifactStore subclass and a line here.
STORES: dict[str, StoreClass] = {
    "file": _local_store,
    "s3": _s3_store,
}


def get_store(settings: Settings) -> ArtifactStore:
    """The artifact store ``settings`` name (one per process and configuration)."""
    return _store(
        settings.artifact_url,
        StoreOptions(
            data_dir=settings.data_dir,
            cache_bytes=settings.artifact_cache_bytes,
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
            s3_access_key_id=settings.s3_access_key_id,
            s3_secret_access_key=settings.s3_secret_access_key.get_secret_value(),
        ),
    )


def store_class(url: str) -> type[ArtifactStore]:
    """The class of the store ``url`` names, by its scheme; ValueError names the setting
    and the schemes there are."""
    scheme, separator, _ = url.partition("://")
    load = STORES.get(scheme) if separator else None
    if load is None:
        known = ", ".join(f"{name}://" for name in STORES)
        raise ValueError(
            f"artifact_url (KILN_ARTIFACT_URL): unsupported artifact store URL {url!r}; "
            f"expected one of the schemes {known}"
        )
    return load()


@functools.lru_cache(maxsize=8)
def _store(url: str, options: StoreOptions) -> ArtifactStore:
    return store_class(url).from_url(url, options)

"""The artifact store interface."""

from __future__ import annotations

import abc
import errno
import re
from dataclasses import dataclass
from pathlib import Path

# A disk that is full, a quota reached, a file size limit hit: the write lost nothing that
# was stored before, and succeeds again once there is room.
OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact was stored, with the digest and size of what was written."""

    key: str
    sha256: str
    size_bytes: int


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (absolute paths, '..', odd characters)."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"invalid artifact key {key!r}")
    return key


class ArtifactStore(abc.ABC):
    """Immutable blobs by key. Implementations are safe to use from several threads and
    processes; a key, once written, is never changed in place (writes are atomic)."""

    @abc.abstractmethod
    def put_file(self, key: str, source: Path) -> StoredArtifact:
        """Copy ``source`` in under ``key`` atomically; return its digest and size."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, durable: bool = True) -> StoredArtifact:
        """Store ``data`` under ``key`` atomically; return its digest and size. With
        ``durable`` False the write may skip waiting for the disk (for scratch data a
        crash may lose, whose digest is checked before it is used again)."""

    @abc.abstractmethod
    def local_path(self, key: str) -> Path:
        """A local file holding the artifact (readers must not modify it)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an artifact."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

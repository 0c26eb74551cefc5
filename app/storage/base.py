"""The artifact store interface, and the digest check every read goes through."""

from __future__ import annotations

import abc
import errno
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from app.core.errors import ArtifactCorrupt, RefusedBelow, Unavailable
from app.core.names import ARTIFACT_KEY

# A disk that is full, a quota reached, a file size limit hit: the write lost nothing that
# was stored before, and succeeds again once there is room.
OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class StoredArtifact:
    """Where an artifact was stored, with the digest and size of what was written."""

    key: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class StoreOptions:
    """What a store may need beside its URL, from the settings (hashable: one store is kept
    per URL and options). A store reads the fields its scheme uses and ignores the others."""

    data_dir: Path
    cache_bytes: int  # the local cache of a remote store
    s3_endpoint_url: str
    s3_region: str
    s3_access_key_id: str
    s3_secret_access_key: str = field(repr=False)  # never in a log line or a message


class InvalidArtifactKey(RefusedBelow, ValueError):
    """A key the store refuses; when it was made from a client's input (a model name), the
    API answers 422 with this message."""

    layer = "storage"


def check_key(key: str) -> str:
    """Refuse keys that could escape the store (absolute paths, '..', control characters,
    anything outside letters, digits, '.', '_', '-' and '/'): a full match."""
    problem = ARTIFACT_KEY.problem(key)
    if problem is None and ".." in key.split("/"):
        problem = f"artifact key {key[:80]!r} holds a '..' segment"
    if problem is not None:
        raise InvalidArtifactKey(f"invalid artifact key: {problem}")
    return key


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(key: str, expected: str | None, actual: str) -> None:
    """Raise ArtifactCorrupt when what was read is not what the registry recorded.
    ``expected`` None: the record predates digests for this kind of artifact."""
    if expected is not None and actual != expected:
        raise ArtifactCorrupt(
            f"artifact {key!r} does not match the sha256 recorded for it "
            f"(recorded {expected[:12]}..., stored {actual[:12]}...): it "
            "was changed after it was written; refusing to use it"
        )


class ArtifactStore(abc.ABC):
    """Immutable blobs by key. Implementations are safe to use from several threads and
    processes; a key, once written, is never changed in place (writes are atomic: a reader
    sees the whole artifact or none). Every read names the sha256 recorded when the
    artifact was written and fails with ArtifactCorrupt when the bytes differ.

    A store serves the URL schemes it declares (``schemes``, without ``://``);
    ``app.storage.STORES`` maps each scheme to its store."""

    schemes: ClassVar[tuple[str, ...]]
    url: str

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, options: StoreOptions) -> Self:
        """The store ``url`` (one of ``schemes``) names, configured from ``options``."""

    @abc.abstractmethod
    def put_file(self, key: str, source: Path) -> StoredArtifact:
        """Copy ``source`` in under ``key`` atomically; return its digest and size."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, durable: bool = True) -> StoredArtifact:
        """Store ``data`` under ``key`` atomically; return its digest and size. With
        ``durable`` False the write may skip waiting for the disk (for scratch data a
        crash may lose, whose digest is checked before it is used again)."""

    @abc.abstractmethod
    def local_path(self, key: str, sha256: str | None) -> Path:
        """A local file holding the artifact, checked against ``sha256`` (readers must not
        modify it). FileNotFoundError when ``key`` holds nothing."""

    def version_file(self, key: str, sha256: str | None, what: str) -> Path:
        """``local_path``, with a missing file an Unavailable (503) that names ``what``
        (such as ``the ONNX file of flowers v2``), never the server's path."""
        try:
            return self.local_path(key, sha256)
        except FileNotFoundError:
            raise Unavailable(f"{what} is missing from the artifact store") from None

    @abc.abstractmethod
    def read_bytes(self, key: str, sha256: str | None) -> bytes:
        """The artifact's bytes, checked against ``sha256``."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an artifact."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    def remove_orphans(self) -> int:
        """Delete what killed processes of this host left half-written in local scratch
        (an S3 cache's partial downloads); how many. Nothing, by default."""
        return 0

    @abc.abstractmethod
    def ensure_ready(self) -> None:
        """Check the store can be reached (and create what it needs); a clear error if not."""

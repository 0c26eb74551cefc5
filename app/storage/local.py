"""Artifacts as files under one directory."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, ClassVar, Self

from app.core.errors import StorageFull
from app.core.scratch import owner_prefix, remove_orphans
from app.storage.base import (
    CHUNK_BYTES,
    OUT_OF_SPACE_ERRNOS,
    ArtifactStore,
    StoredArtifact,
    StoreOptions,
    check_digest,
    check_key,
    sha256_file,
)


def _out_of_space(error: OSError, key: str) -> OSError | StorageFull:
    """A full disk (or quota, or file size limit) as an error the caller can act on; the
    message names the key, never the server's path. Other OS errors pass unchanged."""
    if error.errno not in OUT_OF_SPACE_ERRNOS:
        return error
    return StorageFull(
        f"the artifact store is out of space ({os.strerror(error.errno)}) "
        f"while writing {key!r}; nothing was stored: free space and try again"
    )


WRITING = ".writing"  # under the root: writes in progress, each named by its process
WRITING_TAG = ".tmp"


class LocalArtifactStore(ArtifactStore):
    """Files under ``root``; a write goes to a temp file in ``root/.writing`` (the same file
    system, named by its host and process), then is renamed into place, so what a killed
    writer leaves is found at the next start without walking the store."""

    schemes: ClassVar[tuple[str, ...]] = ("file",)

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"file://{root}"
        (self.root / WRITING).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str, options: StoreOptions) -> Self:
        """``file://PATH``: the directory PATH (the options are not used)."""
        return cls(Path(url.removeprefix("file://")))

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)  # no key names WRITING: a segment never starts with '.'

    def remove_orphans(self) -> int:
        return remove_orphans(self.root / WRITING, (WRITING_TAG,))

    def _write_atomic(
        self, key: str, fill: Callable[[BinaryIO], str], *, durable: bool = True
    ) -> StoredArtifact:
        """Write through ``fill`` (which returns the digest of what it wrote) to a temp
        file, then rename it into place; fsynced first unless ``durable`` is False."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, temp_name = tempfile.mkstemp(
                dir=self.root / WRITING, prefix=owner_prefix(WRITING_TAG)
            )
        except OSError as error:
            raise _out_of_space(error, key) from error
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out:
                digest = fill(out)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException as error:
            temp.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise _out_of_space(error, key) from error
            raise
        return StoredArtifact(key=key, sha256=digest, size_bytes=target.stat().st_size)

    def put_file(self, key: str, source: Path) -> StoredArtifact:
        def fill(out: BinaryIO) -> str:
            digest = hashlib.sha256()
            with source.open("rb") as src:
                while block := src.read(CHUNK_BYTES):
                    digest.update(block)
                    out.write(block)
            return digest.hexdigest()

        return self._write_atomic(key, fill)

    def put_bytes(self, key: str, data: bytes, *, durable: bool = True) -> StoredArtifact:
        def fill(out: BinaryIO) -> str:
            out.write(data)
            return hashlib.sha256(data).hexdigest()

        return self._write_atomic(key, fill, durable=durable)

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"artifact {key!r} is missing from {self.root}")
        return path

    def local_path(self, key: str, sha256: str | None) -> Path:
        path = self._existing(key)
        if sha256 is not None:
            check_digest(key, sha256, sha256_file(path))
        return path

    def read_bytes(self, key: str, sha256: str | None) -> bytes:
        data = self._existing(key).read_bytes()
        check_digest(key, sha256, hashlib.sha256(data).hexdigest())
        return data

    def ensure_ready(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

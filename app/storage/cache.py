"""A local, content-addressed cache of remote artifacts, bounded in bytes.

Files are named by their sha256, so a cached file is only ever the bytes that digest names:
the same artifact under two keys is one file, and a reader checks what it opens against the
name. Several processes on one machine (gateways, worker processes) share one cache
directory: files appear by rename, and the least recently used are deleted past the bound.
A file used in the last ``grace_s`` seconds is never deleted (a reader may be about to open
it), so the cache may stay over its bound for that long.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from app.core.scratch import owner_prefix, remove_orphans
from app.storage.base import check_digest

_HEX = frozenset("0123456789abcdef")
PART_TAG = ".part"  # a download (or copy) being written


class ArtifactCache:
    """Files under ``root`` named by sha256, at most ``max_bytes`` of them (see module)."""

    def __init__(self, root: Path, max_bytes: int, *, grace_s: float = 300.0) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.grace_s = grace_s
        self.root.mkdir(parents=True, exist_ok=True)

    def remove_orphans(self) -> int:
        """Delete partial files of processes of this host that were killed mid-write."""
        return remove_orphans(self.root, (PART_TAG,))

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def get(self, sha256: str) -> Path | None:
        """The cached file holding ``sha256``'s bytes, marked as just used; None if absent."""
        path = self._path(sha256)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def add(self, key: str, sha256: str | None, fill: Callable[[BinaryIO], str]) -> Path:
        """Write through ``fill`` (which returns the digest of what it wrote); the file is
        kept only when that digest is ``sha256`` (ArtifactCorrupt if not; None: a legacy
        record without a digest, kept under what was written)."""
        handle, temp_name = tempfile.mkstemp(dir=self.root, prefix=owner_prefix(PART_TAG))
        temp = Path(temp_name)
        try:
            with os.fdopen(handle, "wb") as out:
                written = fill(out)
            check_digest(key, sha256, written)
            target = self._path(written)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(temp, 0o444)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        self.trim(keep=target)
        return target

    def add_bytes(self, key: str, data: bytes) -> Path:
        """Cache ``data`` (just written to the store) under its own digest."""

        def fill(out: BinaryIO) -> str:
            out.write(data)
            return hashlib.sha256(data).hexdigest()

        return self.add(key, None, fill)

    def discard(self, sha256: str) -> None:
        """Drop a cached file (one that no longer matches its name)."""
        self._path(sha256).unlink(missing_ok=True)

    def _entries(self) -> Iterable[tuple[Path, os.stat_result]]:
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.startswith(".part-"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    yield path, path.stat()

    def size_bytes(self) -> int:
        """Bytes the cache holds now."""
        return sum(stat.st_size for _, stat in self._entries())

    def trim(self, keep: Path | None = None) -> None:
        """Delete least recently used files until the cache fits its bound, sparing
        ``keep`` and files used within ``grace_s``."""
        entries = sorted(self._entries(), key=lambda entry: entry[1].st_mtime)
        total = sum(stat.st_size for _, stat in entries)
        recent = time.time() - self.grace_s
        for path, stat in entries:
            if total <= self.max_bytes:
                break
            if path == keep or stat.st_mtime > recent:
                continue
            path.unlink(missing_ok=True)
            total -= stat.st_size

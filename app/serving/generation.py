"""A counter that the gateway processes of one machine share through a memory-mapped file
(``kiln serve --gateways N``): a write made through one process bumps it, and every other
process sees the new value on its next lookup and drops its cached key checks and version
resolutions, so the change shows on the next request whichever process serves it."""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_COUNTER = struct.Struct("<Q")


class SharedGeneration:
    """One 8-byte counter in ``path`` (made when absent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size < _COUNTER.size:
                os.ftruncate(descriptor, _COUNTER.size)
            self._map = mmap.mmap(descriptor, _COUNTER.size)
        finally:
            os.close(descriptor)

    def read(self) -> int:
        """The current value (a torn read only costs a needless cache drop)."""
        value: int = _COUNTER.unpack_from(self._map)[0]
        return value

    def bump(self) -> int:
        """Add one, under a lock the other processes respect; the new value."""
        with self.path.open("rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            value = self.read() + 1
            _COUNTER.pack_into(self._map, 0, value)
        return value

"""Temporary files that name the host and process that made them, so that a process
starting up can delete the leftovers of processes that were killed (SIGKILL, a power cut)
without touching those of live ones: several gateways and workers may share a data
directory or a cache. ``owner_prefix(tag)`` starts each such file's name;
``remove_orphans`` deletes the files of a tag whose process on this host is gone."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def owner_prefix(tag: str, pid: int | None = None) -> str:
    """``<tag>-<host>-<pid>-``: how a temporary file of ``tag`` made here starts."""
    return f"{tag}-{socket.gethostname()}-{os.getpid() if pid is None else pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_orphans(directory: Path, tags: tuple[str, ...]) -> int:
    """Delete files in ``directory`` made under ``tags`` by processes of this host that no
    longer run; how many."""
    if not directory.is_dir():
        return 0
    host = socket.gethostname()
    removed = 0
    for tag in tags:
        prefix = f"{tag}-{host}-"
        for path in directory.glob(f"{prefix}*"):
            pid = path.name.removeprefix(prefix).split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                path.unlink(missing_ok=True)
                removed += 1
    return removed

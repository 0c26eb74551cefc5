"""Copying an uploaded file to a temp file in the data dir for the duration of a request."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from app.core.config import Settings
from app.core.errors import StorageFull
from app.storage import OUT_OF_SPACE_ERRNOS


def _owner_prefix(pid: int) -> str:
    """Spool files name the host and process that wrote them, so that a gateway starting
    up can tell the leftovers of a killed one from the uploads of a live one (several
    gateways may share a data dir)."""
    return f"upload-{socket.gethostname()}-{pid}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_spools(settings: Settings) -> int:
    """Delete spool files left by gateway processes of this host that no longer run (a
    SIGKILL mid-upload skips the clean-up); how many."""
    spool = settings.data_dir / "tmp"
    removed = 0
    prefix = f"upload-{socket.gethostname()}-"
    for path in spool.glob(f"{prefix}*") if spool.is_dir() else []:
        pid = path.name.removeprefix(prefix).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


@contextmanager
def spooled_upload(upload: UploadFile, settings: Settings, suffix: str) -> Iterator[Path]:
    """The upload as a file on disk, removed when the block ends."""
    spool = settings.data_dir / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=spool, suffix=suffix, prefix=_owner_prefix(os.getpid())
    ) as copy:
        try:
            shutil.copyfileobj(upload.file, copy, 1 << 20)
            copy.flush()
        except OSError as error:
            if error.errno in OUT_OF_SPACE_ERRNOS:
                raise StorageFull(
                    "the server's data disk is out of space while receiving "
                    "the upload; nothing was stored: free space and try "
                    "again"
                ) from error
            raise
        yield Path(copy.name)

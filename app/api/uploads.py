"""Copying an uploaded file to a temp file in the data dir for the duration of a request."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from app.core.config import Settings
from app.core.errors import StorageFull
from app.core.scratch import owner_prefix, remove_orphans
from app.storage import OUT_OF_SPACE_ERRNOS, get_store

SPOOL_TAGS = ("upload", "parse", "batch")  # the gateway's uploads, dataset parsing, outputs


def remove_orphaned_spools(settings: Settings) -> int:
    """Delete spool files left by gateway and worker processes of this host that no longer
    run (a SIGKILL mid-upload or mid-job skips the clean-up), and the store's own (an S3
    cache's partial downloads); how many."""
    removed = remove_orphans(settings.data_dir / "tmp", SPOOL_TAGS)
    return removed + get_store(settings).remove_orphans()


@contextmanager
def spooled_upload(upload: UploadFile, settings: Settings, suffix: str) -> Iterator[Path]:
    """The upload as a file on disk, removed when the block ends."""
    spool = settings.data_dir / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        dir=spool, suffix=suffix, prefix=owner_prefix("upload")
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

"""Copying an uploaded file to a temp file in the data dir for the duration of a request."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from app.config import Settings


@contextmanager
def spooled_upload(upload: UploadFile, settings: Settings, suffix: str) -> Iterator[Path]:
    """The upload as a file on disk, removed when the block ends."""
    spool = settings.data_dir / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, suffix=suffix) as copy:
        shutil.copyfileobj(upload.file, copy, 1 << 20)
        copy.flush()
        yield Path(copy.name)

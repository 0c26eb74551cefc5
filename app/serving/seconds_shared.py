"""The per-second counters of every gateway process, summed: ``kiln serve --gateways N``
runs processes that share one port, so a request for the serving page reaches any one of
them. Each process writes its rings (``app.serving.seconds``) to a file of its own in the
directory they share (``KILN_SERVING_SECONDS_DIR``) every ``SHARE_S``, the way ``/metrics``
is summed from files: only the counts that are not zero, and only when it counted
something since its last write. A reader takes its own rings live and the others' files,
which are at most ``SHARE_S`` behind. A gateway on its own reads its rings alone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from zipfile import BadZipFile

import numpy as np

from app.serving.counters import ServingCounters
from app.serving.seconds import SLOTS, WIDTH, RingKey

logger = logging.getLogger(__name__)

SHARE_S = 1.0
Summed = dict[RingKey, np.ndarray]  # each series' counts, seconds x WIDTH


class SharedSeconds:
    """This process's per-second counters, and the other gateway processes' (see the
    module docstring)."""

    def __init__(self, counters: ServingCounters, folder: str = "", process: str = "") -> None:
        self.counters = counters
        self.folder = Path(folder) if folder else None
        self._mine = f"{process or os.getpid()}.npz"  # its file among the others
        self._written = -1  # the counters' change count at the last write

    @property
    def shared(self) -> bool:
        return self.folder is not None

    async def share(self) -> None:
        """Write this process's counts every ``SHARE_S`` (a task for the gateway's
        lifespan; nothing to do for a gateway on its own)."""
        if self.folder is None:
            return
        while True:
            await asyncio.sleep(SHARE_S)
            try:
                await asyncio.to_thread(self.write)
            except OSError:
                logger.exception("writing the per-second serving counters failed")

    def write(self) -> None:
        """This process's counts of the last ``SLOTS`` seconds, where the others read them
        (a new file in place of the old one, at once)."""
        if self.folder is None:
            return
        now = int(time.time())
        changes, copies = self.counters.seconds_changed()
        if changes == self._written:
            return  # nothing counted since the last write
        keys: list[RingKey] = []
        series, seconds, cells, values = [], [], [], []
        for index, (key, copy) in enumerate(copies.items()):
            fresh = copy.stamps > now - SLOTS
            held = copy.cells[fresh]
            rows, columns = np.nonzero(held)
            keys.append(key)
            series.append(np.full(len(rows), index, dtype=np.int32))
            seconds.append(copy.stamps[fresh][rows])
            cells.append(columns.astype(np.int16))
            values.append(held[rows, columns])
        temporary = self.folder / f".{self._mine}.writing"
        with temporary.open("wb") as handle:
            np.savez(
                handle,
                keys=np.array(json.dumps(keys)),
                series=_joined(series, np.int32),
                seconds=_joined(seconds, np.int64),
                cells=_joined(cells, np.int16),
                values=_joined(values, np.uint32),
            )
        os.replace(temporary, self.folder / self._mine)
        self._written = changes

    def read(self, model: str | None, since: int, seconds: int) -> tuple[Summed, int]:
        """Each series of ``model`` (every model: None) over the ``seconds`` seconds from
        ``since``, summed over the gateway processes; and how many processes' counts are
        in the sum (this one, and each other that counted a request in the last ``SLOTS``
        seconds)."""
        summed: Summed = {
            key: copy.window(since, seconds)
            for key, copy in self.counters.seconds_copy(model).items()
        }
        processes = 1
        if self.folder is None:
            return summed, processes
        for path in sorted(self.folder.glob("*.npz")):
            if path.name == self._mine:
                continue
            try:
                counted = _add_file(path, model, since, seconds, summed)
            except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, BadZipFile):
                # gone, torn, or written by another build (other buckets, other keys)
                logger.warning("skipped the per-second counters in %s", path, exc_info=True)
                continue
            processes += counted
        return summed, processes


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def _add_file(path: Path, model: str | None, since: int, seconds: int, summed: Summed) -> int:
    """Add another process's counts from ``path`` to ``summed``; 1 if it counted a request
    in the last ``SLOTS`` seconds, else 0."""
    with np.load(path, allow_pickle=False) as data:
        keys = [tuple(key) for key in json.loads(str(data["keys"]))]
        series, stamps = data["series"], data["seconds"]
        cells, values = data["cells"], data["values"]
    if not len(stamps) or int(stamps.max()) <= int(time.time()) - SLOTS:
        return 0
    inside = (stamps >= since) & (stamps < since + seconds)
    for index, key in enumerate(keys):
        if model is not None and key[0] != model:
            continue
        mask = inside & (series == index)
        if not mask.any():
            continue
        ring_key: RingKey = (str(key[0]), int(key[1]), int(key[2]))
        target = summed.setdefault(ring_key, np.zeros((seconds, WIDTH), dtype=np.int64))
        np.add.at(target, (stamps[mask] - since, cells[mask].astype(np.intp)), values[mask])
    return 1

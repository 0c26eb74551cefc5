"""What the gateway watches about the traffic it serves: the shadow copy, the sampled
request log and drift, fed by ``observe`` on the request path (a few queue appends at
most) and written to the registry and the artifact store by one flusher thread every
``KILN_MONITOR_FLUSH_S`` seconds. A failed write is logged and the counts kept for the
next flush where they can be; nothing here ever fails a request."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count

import numpy as np

from app.core.config import Settings
from app.core.db import session_scope
from app.registry import monitoring
from app.serving.drift import ColumnReference, DriftMonitor, reference_of
from app.serving.request_log import Entry, RequestLog, parquet_part
from app.serving.runtime import Feeds, LoadedModel
from app.serving.shadow import ShadowRunner
from app.storage import ArtifactStore

logger = logging.getLogger(__name__)

LOG_PREFIX = "request-logs"


class ServingMonitors:
    """The shadow runner, the request log, the drift monitor and their flusher."""

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore,
        resolve: Callable[[str, int], LoadedModel],
        on_log_drop: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.shadow = ShadowRunner(resolve, settings.shadow_queue)
        self.log = RequestLog(
            settings.log_sample, int(settings.log_buffer_mb * 1048576), on_log_drop
        )
        self.drift = DriftMonitor(settings.drift_sample, settings.drift_window_rows)
        self._parts = count()
        self._owner = f"{socket.gethostname()}-{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flush_lock = threading.Lock()
        self.drift_events = 0

    # -- the request path -------------------------------------------------------------------
    def observe(
        self,
        *,
        name: str,
        version: int,
        shadow: int | None,
        model: LoadedModel,
        protocol: str,
        feeds: Feeds,
        output: np.ndarray,
        latency_s: float,
        log_sample: float | None,
        drift_threshold: float | None,
        request_id: str | None,
    ) -> str | None:
        """Hand an answered request to the monitors; the id it is logged under, if it is."""
        if shadow is not None:
            self.shadow.offer(name, version, shadow, feeds, output)
        self.drift.offer(
            name,
            version,
            model.version_id,
            model,
            feeds,
            self.settings.drift_threshold if drift_threshold is None else drift_threshold,
        )
        return self.log.offer(
            name=name,
            version=version,
            model=model,
            protocol=protocol,
            feeds=feeds,
            output=output,
            latency_s=latency_s,
            sample=self.log.sample_of(log_sample),
            request_id=request_id,
        )

    # -- the flusher ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kiln-monitors", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the flusher after a last flush, and the shadow thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.shadow.wait_idle(5)
        self.flush()
        self.shadow.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.monitor_flush_s):
            self.flush()

    def flush(self) -> None:
        """Write what was measured since the last flush (one flush at a time)."""
        with self._flush_lock:
            for step in (self._flush_shadow, self._flush_log, self._flush_drift):
                try:
                    step()
                except Exception:
                    logger.exception("writing serving measurements failed (%s)", step.__name__)

    def _flush_shadow(self) -> None:
        tallies = self.shadow.take()
        if not tallies:
            return
        with session_scope(self.settings.database_url) as session:
            for (name, version, shadow), tally in tallies.items():
                monitoring.add_shadow_tally(session, name, version, shadow, tally.as_dict())

    def _flush_log(self) -> None:
        for name, entries in self.log.take().items():
            self._write_part(name, entries)

    def _write_part(self, name: str, entries: list[Entry]) -> None:
        data = parquet_part(entries)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        key = f"{LOG_PREFIX}/{name}/{stamp}-{self._owner}-{next(self._parts)}.parquet"
        stored = self.store.put_bytes(key, data)
        with session_scope(self.settings.database_url) as session:
            monitoring.add_log_part(
                session,
                name,
                key=key,
                sha256=stored.sha256,
                rows=sum(len(entry.output) for entry in entries),
                size_bytes=len(data),
                first_at=datetime.fromtimestamp(min(entry.at for entry in entries), UTC),
                last_at=datetime.fromtimestamp(max(entry.at for entry in entries), UTC),
            )
            dropped = monitoring.trim_log(session, name, int(self.settings.log_max_mb * 1048576))
        for old in dropped:  # after the commit: the rows that named them are gone
            self.store.delete(old)

    def _reference(self, version_id: int) -> list[ColumnReference] | None:
        with session_scope(self.settings.database_url) as session:
            found = monitoring.drift_reference(session, version_id)
        if found is None:
            return None
        columns, encoding, rows, features = found
        return reference_of(columns, encoding, rows, features)

    def _flush_drift(self) -> None:
        reports = self.drift.process(self._reference)
        if not reports:
            return
        with session_scope(self.settings.database_url) as session:
            for report in reports:
                values = [c.psi for c in report.columns if c.psi is not None]
                changed = monitoring.add_drift_window(
                    session, report.model, report.version, report, max(values, default=None)
                )
                if report.drifted and changed:  # a drift that starts or changes, once
                    self.drift_events += 1
                    message = (
                        f"drift in {len(report.drifted)} column(s) of version {report.version} "
                        f"over {report.rows} rows: {', '.join(report.drifted[:10])} (PSI above "
                        f"{report.threshold:g})"
                    )
                    logger.warning("model %r: %s", report.model, message)
                    monitoring.add_event(
                        session,
                        report.model,
                        "drift",
                        message,
                        {"version": report.version, "columns": report.drifted},
                    )

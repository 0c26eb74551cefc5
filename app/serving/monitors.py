"""What the gateway watches about the traffic it serves: the shadow copy, the sampled
request log and drift.

On the request path ``observe`` does O(1) work: it decides which watchers want the request
(the shadow always; the log and drift by their samples, drawn before anything is copied)
and, only if one does, puts one reference to the answered request on the queue they share,
bounded in bytes (``app.serving.observations``); a request that does not fit is dropped
and counted per watcher. One thread per gateway process takes what waits, runs the
shadow's copies (on one-thread sessions, so never on more cores than the primary), counts
drift (vectorised over many samples at once), keeps the log's entries, and every
``KILN_MONITOR_FLUSH_S`` writes Parquet parts to the artifact store and counts, drift
windows, events and how far its open drift windows have got to the registry. Its niceness
is left alone: a lowered priority would let it be descheduled while it holds the GIL,
stalling the event loop behind it. A failed write is logged and the counts kept for the
next flush where they can be; nothing here ever fails a request."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count

import numpy as np

from app.contracts.traffic import DriftReport
from app.core.config import Settings
from app.core.db import session_scope
from app.registry import drift_progress, monitoring
from app.serving.directory import Target
from app.serving.drift import ColumnReference, DriftMonitor, reference_of
from app.serving.observations import Observation, ObservationQueue, observation_bytes
from app.serving.request_log import Entry, RequestLog, new_request_id, parquet_part
from app.serving.runtime import Feeds, LoadedModel
from app.serving.shadow import ShadowRunner
from app.storage import ArtifactStore

logger = logging.getLogger(__name__)

LOG_PREFIX = "request-logs"
TICK_S = 0.005  # how often the thread looks for observations when there were none
TAKE_BYTES = 8 * 1048576  # what one round of the thread takes at most


class ServingMonitors:
    """The queue, the watchers and the thread that serves them (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: ArtifactStore,
        resolve: Callable[[str, int], LoadedModel],
        on_log_drop: Callable[[], None] = lambda: None,
        on_drift_drop: Callable[[], None] = lambda: None,
        on_shadow_run: Callable[[str, int, int, int, float], None] = lambda *counts: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = ObservationQueue(int(settings.monitor_queue_mb * 1048576))
        self.shadow = ShadowRunner(
            resolve,
            settings.max_predict_rows,
            release=self.queue.release,
            max_bytes=self.queue.max_bytes // 2,  # the shadow holds half the queue at most
            on_run=on_shadow_run,
        )
        self.log = RequestLog(int(settings.log_buffer_mb * 1048576), on_log_drop)
        self.drift = DriftMonitor(settings.drift_window_rows)
        self._log_sample = settings.log_sample
        self._drift_sample = settings.drift_sample
        self._drift_threshold = settings.drift_threshold
        self.drift_skipped = 0  # drift samples that found the queue full
        self._on_drift_drop = on_drift_drop
        self._reports: list[DriftReport] = []  # windows that filled since the last flush
        self.drift_events = 0
        self._parts = count()
        self._owner = f"{socket.gethostname()}-{os.getpid()}"
        self._progress: dict[tuple[str, int], int] = {}  # open windows' rows, as last written
        self._progress_at = 0.0  # when they were last written (monotonic)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._work_lock = threading.Lock()  # one round of work (or a flush) at a time
        self._busy = False

    # -- the request path -------------------------------------------------------------------
    def observe(
        self,
        target: Target,
        protocol: str,
        feeds: Feeds,
        output: np.ndarray,
        payload_bytes: int,
        arrived: float,
        request_id: str | None,
    ) -> str | None:
        """Hand an answered request to the watchers that want it. A logged request is
        kept under a new id of the gateway's (unique, O(1) to make), with the client's
        ``request_id`` beside it; the id its answer carries is returned: the client's,
        echoed, or the gateway's when it sent none (None: not logged)."""
        shadow = target.shadow
        sample = self._log_sample if target.log_sample is None else target.log_sample
        logged = sample > 0 and (sample >= 1 or random.random() < sample)
        drift = self._drift_sample > 0 and (
            self._drift_sample >= 1 or random.random() < self._drift_sample
        )
        if drift and target.model.version_id in self.drift.unmeasured:
            drift = False
        if shadow is None and not logged and not drift:
            return None
        threshold = None
        if drift:
            threshold = target.drift_threshold
            if threshold is None:
                threshold = self._drift_threshold
        log_id = new_request_id() if logged else None
        now = time.perf_counter()
        observation = Observation(
            name=target.name,
            version=target.version,
            model=target.model,
            protocol=protocol,
            feeds=feeds,
            output=output,
            latency_s=now - arrived,
            at=time.time(),
            size=observation_bytes(feeds, output, payload_bytes),
            shadow=shadow,
            request_id=log_id,
            client_request_id=request_id if logged else None,
            drift_threshold=threshold,
        )
        if self._thread is None:
            self.start()
        if self.queue.offer(observation):
            return (request_id or log_id) if logged else None
        if shadow is not None:
            self.shadow.dropped(target.name, target.version, shadow)
        if logged:
            self.log.drop()
        if drift:
            self.drift_skipped += 1
            self._on_drift_drop()
        return None

    # -- the thread -------------------------------------------------------------------------
    def start(self) -> None:
        with self._work_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kiln-monitors", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last round and flush; the shadow's copies still waiting
        are dropped (counted), not run (a slow shadow never holds up a shutdown)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.shadow.stop(timeout_s=self.settings.upload_run_timeout_s + 1)
        self.flush()
        if self._progress:  # its open windows end with it
            try:
                with session_scope(self.settings.database_url) as session:
                    drift_progress.forget_gateway(session, self._owner)
            except Exception:
                logger.exception("forgetting this gateway's drift progress failed")

    def _run(self) -> None:
        flush_due = time.monotonic() + self.settings.monitor_flush_s
        while not self._stop.is_set():
            if not self.work():
                self._stop.wait(TICK_S)
            if time.monotonic() >= flush_due:
                self.flush()
                flush_due = time.monotonic() + self.settings.monitor_flush_s

    def work(self) -> bool:
        """One round: everything the queue holds now (up to ``TAKE_BYTES``) goes to its
        watchers; whether there was anything."""
        with self._work_lock:
            taken = self.queue.take(TAKE_BYTES)
            if not taken:
                return False
            self._busy = True
            held: set[int] = set()
            try:
                held = self._serve(taken)
            finally:
                self.queue.release([item for item in taken if id(item) not in held])
                self._busy = False
        return True

    def _serve(self, taken: list[Observation]) -> set[int]:
        """Hand each watcher its observations; the ids of those the shadow's thread took
        (their bytes stay counted until it is done with them)."""
        held = {id(item) for item in self.shadow.submit([i for i in taken if i.shadow is not None])}
        for step, items in (
            (self.log.add, [item for item in taken if item.request_id is not None]),
            (self._count_drift, [item for item in taken if item.drift_threshold is not None]),
        ):
            if not items:
                continue
            try:
                step(items)
            except Exception:
                logger.exception("a serving monitor failed (%s)", getattr(step, "__name__", step))
        return held

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until everything queued has been served (tests, shutdown); whether it was."""
        deadline = time.monotonic() + timeout_s
        while len(self.queue) or self._busy or not self.shadow.idle():
            if time.monotonic() > deadline:
                return False
            if self._thread is None or not self._thread.is_alive():
                self.work()
            else:
                time.sleep(0.005)
        return True

    # -- writing ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Serve what waits, then write what was measured since the last flush."""
        while self.work():
            pass
        with self._work_lock:
            for step in (
                self._flush_shadow,
                self._flush_log,
                self._count_pending_drift,
                self._flush_drift,
                self._flush_drift_progress,
            ):
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
        part = parquet_part(entries)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        key = f"{LOG_PREFIX}/{name}/{stamp}-{self._owner}-{next(self._parts)}.parquet"
        stored = self.store.put_bytes(key, part.data)
        with session_scope(self.settings.database_url) as session:
            monitoring.add_log_part(
                session,
                name,
                key=key,
                sha256=stored.sha256,
                rows=part.rows,
                size_bytes=len(part.data),
                raw_bytes=part.raw_bytes,
                first_at=datetime.fromtimestamp(min(entry.at for entry in entries), UTC),
                last_at=datetime.fromtimestamp(max(entry.at for entry in entries), UTC),
            )
            dropped = monitoring.trim_log(session, name, int(self.settings.log_max_mb * 1048576))
        for old in dropped:  # after the commit: the rows that named them are gone
            self.store.delete(old)

    # -- drift ------------------------------------------------------------------------------
    def _reference(self, version_id: int) -> list[ColumnReference] | None:
        with session_scope(self.settings.database_url) as session:
            found = monitoring.drift_reference(session, version_id)
        if found is None:
            return None
        columns, encoding, rows, features = found
        return reference_of(columns, encoding, rows, features)

    def _count_drift(self, observations: list[Observation]) -> None:
        self._reports.extend(self.drift.add(observations, self._reference))

    def _count_pending_drift(self) -> None:
        self._reports.extend(self.drift.add([], self._reference, now=True))

    def _flush_drift(self) -> None:
        reports, self._reports = self._reports, []
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

    def _flush_drift_progress(self) -> None:
        """Write how far each open window has got when it changed (a window that filled or
        closed goes back to 0), and all of them every ``REFRESH_S`` while any is open, so
        readers can tell this process from one that is gone."""
        now = self.drift.progress()
        due = time.monotonic() - self._progress_at >= drift_progress.REFRESH_S and any(now.values())
        changed = {
            key: now.get(key, 0)
            for key in now.keys() | self._progress.keys()
            if due or now.get(key, 0) != self._progress.get(key)
        }
        if not changed:
            return
        with session_scope(self.settings.database_url) as session:
            for (name, version), rows in changed.items():
                drift_progress.set_progress(
                    session,
                    name,
                    version,
                    self._owner,
                    rows=rows,
                    window_rows=self.settings.drift_window_rows,
                    sample=self._drift_sample,
                )
        self._progress = {**self._progress, **changed}
        self._progress_at = time.monotonic()

"""Running a batch prediction on a worker: read a chunk, predict it, store it as a part,
record the part in the job's checkpoint (with the lease renewal); at the end join the
parts into the output. An attempt after a dead worker starts after the last recorded part."""

from __future__ import annotations

import logging
import resource
import tempfile
import time
from pathlib import Path

from app.batch.kind import PREDICT
from app.batch.output import (
    MEDIA_TYPES,
    OutputWriter,
    part_bytes,
    prediction_table,
    read_part,
)
from app.batch.plan import Checkpoint, Part, output_key, part_key
from app.batch.reader import chunks, estimate_rows, feeds_of, layout_for, prefetched
from app.batch.runner import ChunkRunner
from app.contracts.results import OutputRef, PredictResult
from app.contracts.signature import VersionConfig
from app.core.db import Session, session_scope
from app.core.errors import ArtifactCorrupt, InvalidInput, Unavailable
from app.core.scratch import owner_prefix
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, JobFailed, Recorder
from app.preprocessing.csv_reader import read_header
from app.registry.service import get_version, uploaded_origin
from app.serving.runtime import UploadLimits
from app.storage import ArtifactStore, get_store

logger = logging.getLogger(__name__)


def _reusable(store: ArtifactStore, job_id: int, checkpoint: Checkpoint) -> Checkpoint:
    """The recorded parts up to the first one that is missing or altered."""
    kept: list[Part] = []
    for part in checkpoint.parts:
        key = part_key(job_id, part)
        try:
            store.local_path(key, part.sha256)
        except (FileNotFoundError, ArtifactCorrupt):
            logger.warning(
                "job %s: part %s is missing or altered; predicting from it again",
                job_id,
                part.index,
            )
            break
        kept.append(part)
    return Checkpoint(parts=kept)


def _peak_rss_mb() -> float:
    """The worker process's peak resident memory so far (its whole life)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    """The worker process's resident memory now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1048576


def run_batch_predict(context: JobContext) -> Recorder:
    """The job handler (see the module docstring)."""
    settings = context.settings
    store = get_store(settings)
    with session_scope(settings.database_url) as session:
        job = JobRepository(session).get_or_raise(context.job_id)
        plan = PREDICT.read_spec(job)
        checkpoint = Checkpoint.model_validate(job.checkpoint or {})
        rows_total = job.progress_total
        version = get_version(session, plan.model, plan.version)
        artifact_key, sha256 = version.artifact_key, version.sha256
        signature, task, labels = version.signature, version.task, version.class_labels
        origin = uploaded_origin(session, version)
        serving = UploadLimits(
            run_timeout_s=settings.upload_run_timeout_s,
            request_memory_mb=settings.upload_request_memory_mb,
        ).plan(None if origin is None else (origin.config or VersionConfig()))
    rss_at_start = _rss_mb()
    try:
        onnx = store.read_bytes(artifact_key, sha256)
        source = store.local_path(plan.input_key, plan.input_sha256)
    except ArtifactCorrupt as corrupt:
        raise JobFailed(corrupt.message) from None
    model = ChunkRunner(
        settings, onnx, signature, serving, f"version {plan.version} of {plan.model!r}"
    )
    header, header_lines = read_header(source)
    layout = layout_for(signature, header, plan.key_columns, plan.feature_names)
    if not rows_total:
        context.report(total=estimate_rows(source, header_lines))
    checkpoint = _reusable(store, context.job_id, checkpoint)
    resumed_at = checkpoint.rows
    key = output_key(context.job_id, context.attempt, plan.output_format)
    spool = settings.data_dir / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile(
        dir=spool, suffix=f".{plan.output_format}", prefix=owner_prefix("batch")
    ) as spooled:
        writer = OutputWriter(Path(spooled.name), plan.output_format)
        try:
            for part in checkpoint.parts:  # an earlier attempt's chunks, in order
                writer.write(
                    read_part(store.local_path(part_key(context.job_id, part), part.sha256))
                )
            chunks_of = prefetched(
                chunks(
                    source,
                    header,
                    header_lines,
                    layout,
                    chunk_rows=plan.chunk_rows,
                    skip_rows=resumed_at,
                )
            )
            for rows in chunks_of:
                context.check()
                done = checkpoint.rows
                output = model.run(feeds_of(rows, layout, signature.input.name, done))
                table = prediction_table(done, rows, layout.keys, output, task, labels)
                part = Part(
                    attempt=context.attempt,
                    index=len(checkpoint.parts),
                    rows=rows.num_rows,
                    sha256="",
                )
                stored = store.put_bytes(
                    part_key(context.job_id, part), part_bytes(table), durable=False
                )  # checked by digest on reuse
                writer.write(table)
                checkpoint.parts.append(part.model_copy(update={"sha256": stored.sha256}))
                context.report(done=checkpoint.rows, checkpoint=checkpoint)
        except InvalidInput as refused:
            writer.abandon()
            raise JobFailed(f"input {plan.filename!r}: {refused.message}") from None
        except Unavailable as failed:
            writer.abandon()
            raise JobFailed(failed.message) from None
        except BaseException:
            writer.abandon()
            raise
        finally:
            model.close()
        writer.close()  # raises what went wrong while writing, if anything did
        done = checkpoint.rows
        if not done:
            raise JobFailed(f"input {plan.filename!r} has no data rows")
        seconds = time.perf_counter() - started
        context.report(total=done)  # the count, where the start had an estimate
        stored = store.put_file(key, Path(spooled.name))
    result = PredictResult(
        output=OutputRef(
            key=key,
            format=plan.output_format,
            media_type=MEDIA_TYPES[plan.output_format],
            sha256=stored.sha256,
            size_bytes=stored.size_bytes,
        ),
        rows=done,
        resumed_at_row=resumed_at,
        seconds=round(seconds, 3),
        rows_per_s=round((done - resumed_at) / seconds, 1) if seconds else None,
        peak_rss_mb=round(_peak_rss_mb(), 1),
        rss_at_start_mb=round(rss_at_start, 1),
        model=plan.model,
        version=plan.version,
    )

    def record(session: Session) -> PredictResult:
        for part in checkpoint.parts:  # the output holds them now
            store.delete(part_key(context.job_id, part))
        return result

    return record

"""Running a batch prediction on a worker: read a chunk, predict it, store it as a part,
record the part in the job's checkpoint (with the lease renewal); at the end join the
parts into the output. An attempt after a dead worker starts after the last recorded part."""

from __future__ import annotations

import hashlib
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.batch.output import MEDIA_TYPES, join_parts, part_bytes, prediction_table
from app.batch.plan import BatchPlan, Checkpoint, Part, output_key, part_key
from app.batch.reader import chunks, count_rows, feeds_of, layout_for
from app.db import session_scope
from app.errors import InvalidInput
from app.evaluation.sessions import open_session
from app.jobs.repository import JobRepository
from app.jobs.runner import JobContext, JobFailed, Recorder
from app.preprocessing.csv_reader import read_header
from app.registry.service import get_version
from app.storage import ArtifactStore, get_store

logger = logging.getLogger(__name__)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _reusable(store: ArtifactStore, job_id: int, checkpoint: Checkpoint) -> Checkpoint:
    """The recorded parts up to the first one that is missing or altered."""
    kept: list[Part] = []
    for part in checkpoint.parts:
        key = part_key(job_id, part)
        if not store.exists(key) or _digest(store.local_path(key)) != part.sha256:
            logger.warning("job %s: part %s is missing or altered; predicting from it again",
                           job_id, part.index)
            break
        kept.append(part)
    return Checkpoint(parts=kept)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_batch_predict(context: JobContext) -> Recorder:
    """The job handler (see the module docstring)."""
    settings = context.settings
    store = get_store(settings.artifact_url)
    with session_scope(settings.database_url) as session:
        job = JobRepository(session).get(context.job_id)
        assert job is not None
        plan = BatchPlan.model_validate(job.spec)
        checkpoint = Checkpoint.model_validate(job.checkpoint or {})
        rows_total = job.trials_total
        version = get_version(session, plan.model, plan.version)
        artifact_key, sha256 = version.artifact_key, version.sha256
        signature, task, labels = version.signature, version.task, version.class_labels
    onnx = store.local_path(artifact_key).read_bytes()
    if hashlib.sha256(onnx).hexdigest() != sha256:
        raise JobFailed(f"the artifact of version {plan.version} of {plan.model!r} does not "
                        "match its sha256; refusing to predict with it")
    model = open_session(onnx, settings.ort_threads)
    source = store.local_path(plan.input_key)
    header, header_lines = read_header(source)
    layout = layout_for(signature, header, plan.key_columns, plan.feature_names)
    if not rows_total:
        rows_total = count_rows(source, header, header_lines)
        context.report(trials_total=rows_total)
    checkpoint = _reusable(store, context.job_id, checkpoint)
    resumed_at = done = checkpoint.rows
    started = time.perf_counter()
    try:
        for rows in chunks(source, header, header_lines, layout, chunk_rows=plan.chunk_rows,
                           skip_rows=done):
            context.check()
            feeds = feeds_of(rows, layout, signature.input.name, done)
            output = model.run([signature.output.name], feeds)[0]
            part = Part(attempt=context.attempt, index=len(checkpoint.parts),
                        rows=rows.num_rows, sha256="")
            stored = store.put_bytes(part_key(context.job_id, part), part_bytes(
                prediction_table(done, rows, layout.keys, output, task, labels)))
            checkpoint.parts.append(part.model_copy(update={"sha256": stored.sha256}))
            done += rows.num_rows
            context.report(trials_done=done, checkpoint=checkpoint.model_dump())
    except InvalidInput as refused:
        raise JobFailed(f"input {plan.filename!r}: {refused.message}") from None
    seconds = time.perf_counter() - started
    result = _join(store, context, plan, checkpoint)
    result.update(rows=done, resumed_at_row=resumed_at, seconds=round(seconds, 3),
                  rows_per_s=round((done - resumed_at) / seconds, 1) if seconds else None,
                  peak_rss_mb=round(_peak_rss_mb(), 1), model=plan.model,
                  version=plan.version)

    def record(session: Session) -> dict[str, Any]:
        for part in checkpoint.parts:  # the output holds them now
            store.delete(part_key(context.job_id, part))
        return result

    return record


def _join(store: ArtifactStore, context: JobContext, plan: BatchPlan,
          checkpoint: Checkpoint) -> dict[str, Any]:
    """The parts as one output file in the store; what the job's result says of it."""
    if not checkpoint.parts:
        raise JobFailed(f"input {plan.filename!r} has no data rows")
    key = output_key(context.job_id, context.attempt, plan.output_format)
    spool = context.settings.data_dir / "tmp"
    spool.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=spool, suffix=f".{plan.output_format}") as joined:
        try:
            join_parts((store.local_path(part_key(context.job_id, part))
                        for part in checkpoint.parts), Path(joined.name), plan.output_format)
        except OSError as error:
            raise JobFailed(f"writing the output failed: {error.strerror}") from None
        stored = store.put_file(key, Path(joined.name))
    return {"output": {"key": key, "format": plan.output_format,
                       "media_type": MEDIA_TYPES[plan.output_format],
                       "sha256": stored.sha256, "size_bytes": stored.size_bytes}}


"""The gateway: ``create_app()`` wires settings, routes, limits, errors and the reaper."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from app.api import (
    datasets,
    explain,
    jobs,
    keys,
    metrics,
    model_writes,
    models,
    monitoring,
    predict,
    v2,
)
from app.api.docs import install_docs
from app.api.errors import PathMethods, error_response, install_error_handlers
from app.api.fast_path import InferenceFastPath
from app.api.grpc_service import grpc_server
from app.api.idempotency import forget_expired
from app.api.limits import (
    MAX_FORM_FIELD_BYTES,
    MAX_FORM_FIELDS,
    MAX_FORM_FILES,
    BodySizeLimit,
    header_problem,
)
from app.api.state import GatewayState
from app.auth.ui_sessions import server_secret
from app.core.config import Settings, get_settings
from app.core.db import session_scope, utcnow
from app.jobs.files import sweep_job_files
from app.jobs.queue import JobQueue
from app.jobs.reaper import reap
from app.kinds import JOB_KINDS
from app.serving.codecs.base import Limits
from app.serving.core import InferenceCore
from app.serving.counters import ServingCounters
from app.serving.directory import ServingDirectory
from app.serving.generation import SharedGeneration
from app.serving.monitors import ServingMonitors
from app.serving.preload import Preload, preload
from app.serving.runtime import SessionCache, UploadLimits
from app.serving.sandbox import SandboxLimits, SandboxPool
from app.serving.seconds_shared import SharedSeconds
from app.storage import get_store
from app.ui.install import install_ui

logger = logging.getLogger(__name__)

DESCRIPTION = """Upload a dataset, search for a small network, serve it.

Every `/v1` route needs `Authorization: Bearer <key>` (use **Authorize** above).
"""


def reap_once(settings: Settings, queue: JobQueue) -> int:
    """One pass of the gateway's housekeeping in its own transaction (sends happen after
    commit): the job reaper, finished jobs' files past their retention deleted
    (``app.jobs.files``), then the Idempotency-Key answers past their time, forgotten;
    returns how many were."""
    with session_scope(settings.database_url) as session:
        reap(session, settings, queue)
        now = utcnow()
        sweep_job_files(session, get_store(settings), JOB_KINDS, settings, now)
        return forget_expired(session, now)


async def _reaper_loop(settings: Settings, queue: JobQueue) -> None:
    while True:
        try:
            await run_in_threadpool(reap_once, settings, queue)
        except Exception:
            logger.exception("reaper pass failed; trying again")
        await asyncio.sleep(settings.reaper_interval_s)


class Gateway(FastAPI):
    """The FastAPI app with the inference fast path in front of its middleware stack: a
    predict or infer request it recognises never enters FastAPI's machinery. Header limits
    come first, for both; a static path asked for with a method it lacks is a 405 before a
    path parameter of another route can take it (``PathMethods``)."""

    fast_path: InferenceFastPath | None = None
    path_methods: PathMethods | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if problem := header_problem(scope["headers"]):
                await error_response(scope["path"], *problem)(scope, receive, send)
                return
            fast_path = self.fast_path
            if fast_path is not None and (route := fast_path.route(scope)) is not None:
                await fast_path.serve(route, scope, receive, send)
                return
            # OPTIONS goes on: CORS preflights are the middleware's to answer.
            if self.path_methods is not None and scope["method"] != "OPTIONS":
                allow = self.path_methods.refused(scope["method"], scope["path"])
                if allow is not None:
                    headers = {"Allow": ", ".join(allow)}
                    await error_response(scope["path"], 405, "Method Not Allowed", headers)(
                        scope, receive, send
                    )
                    return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    run_reaper: bool = True,
    serve_grpc: bool = False,
    reuse_port: bool = False,
) -> FastAPI:
    """The ASGI app. ``run_reaper`` starts the lost-job reaper with the app's lifespan;
    ``serve_grpc`` the Open Inference Protocol's gRPC service on ``KILN_GRPC_PORT`` (shared
    with other gateway processes when ``reuse_port``)."""
    settings = settings or get_settings()
    queue = JobQueue(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_reaper_loop(settings, queue))] if run_reaper else []
        if settings.preload_models:
            tasks.append(
                asyncio.create_task(
                    asyncio.to_thread(
                        preload, state.directory, settings.preload_models, state.preload
                    )
                )
            )
        # What start-up made (modules, settings, the registry's metadata: about 260,000
        # objects) lives as long as the process: frozen, the collector's full passes scan
        # only what serving makes. Unfrozen, one pass paused the event loop for 100 ms here.
        gc.collect()
        gc.freeze()
        loop = asyncio.get_running_loop()
        state.core.attach(loop)
        state.sandboxes.attach(loop)
        tasks.append(asyncio.create_task(state.metrics.push_shared()))
        tasks.append(asyncio.create_task(state.seconds.share()))
        state.monitors.start()
        grpc = None
        if serve_grpc and settings.grpc_port:
            grpc = grpc_server(
                state,
                host=settings.grpc_host,
                port=settings.grpc_port,
                reuse_port=reuse_port,
            )
            grpc.start()
            logger.info("gRPC inference service on %s:%s", settings.grpc_host, settings.grpc_port)
        try:
            yield
        finally:
            if grpc is not None:
                await asyncio.to_thread(lambda: grpc.stop(grace=2).wait())
            metrics.leave_shared_metrics()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(state.monitors.stop)  # a last flush of what was measured
            state.sandboxes.close()

    app = Gateway(
        title="ModelKiln",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        form_limits={
            "max_files": MAX_FORM_FILES,
            "max_fields": MAX_FORM_FIELDS,
            "max_part_size": MAX_FORM_FIELD_BYTES,
        },
    )
    store = get_store(settings)
    sandboxes = SandboxPool(SandboxLimits.from_settings(settings))
    sessions = SessionCache(
        store,
        threads=settings.ort_threads,
        capacity=settings.session_cache_size,
        max_bytes=int(settings.session_cache_mb * 1048576),
        sandboxes=sandboxes,
    )
    shared = (
        SharedGeneration(Path(settings.serving_generation_file))
        if settings.serving_generation_file
        else None
    )
    directory = ServingDirectory(
        settings.database_url,
        sessions,
        ttl_s=settings.serving_cache_s,
        shared=shared,
        uploads=UploadLimits(
            run_timeout_s=settings.upload_run_timeout_s,
            request_memory_mb=settings.upload_request_memory_mb,
        ),
        max_rows=settings.max_predict_rows,
        coalesce=settings.coalesce,
    )
    counters = ServingCounters()
    serving_metrics = metrics.ServingMetrics(sessions, settings, counters)
    monitors = ServingMonitors(
        settings,
        store,
        directory.shadow_model,
        on_log_drop=serving_metrics.log_dropped.inc,
        on_drift_drop=serving_metrics.drift_dropped.inc,
        on_shadow_run=counters.shadow_ran,
    )
    limits = Limits(
        max_rows=settings.max_predict_rows, max_tensor_elements=settings.max_tensor_elements
    )
    state = GatewayState(
        settings=settings,
        started_at=utcnow(),
        store=store,
        queue=queue,
        sessions=sessions,
        directory=directory,
        preload=Preload(done=not settings.preload_models),
        metrics=serving_metrics,
        monitors=monitors,
        core=InferenceCore(directory, monitors, counters, limits),
        sandboxes=sandboxes,
        ui_secret=server_secret(settings.ui_secret.get_secret_value(), settings.ui_secret_path),
        seconds=SharedSeconds(counters, settings.serving_seconds_dir),
    )
    app.state.gateway = state
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, settings=settings)
    app.fast_path = InferenceFastPath(state, cors=bool(settings.cors_origin_list))
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_credentials=settings.cors_credentials,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Inference-Header-Content-Length",
            ],
        )
    # The inference routes first: routes are matched in order, and these are the hot ones.
    routers = [predict, explain, v2, datasets, jobs, models, model_writes, monitoring]
    for module in [*routers, keys, metrics]:
        app.include_router(module.router)
    install_docs(app)  # /docs and /redoc with their assets served from here
    install_ui(app)
    app.path_methods = PathMethods(app.routes)  # once every route is in
    return app


def gateway_app() -> FastAPI:
    """The app of one of ``kiln serve --gateways N``'s processes (a uvicorn factory): gRPC
    on the shared port, settings from the environment ``kiln serve`` prepared."""
    return create_app(get_settings(), serve_grpc=True, reuse_port=True)

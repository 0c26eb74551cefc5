"""The dashboard's pages. Each reads through the same services and read models as the
REST API (``app.jobs.service``, ``app.registry``, ``app.datasets.service``, the API's
``job_read`` / ``model_read`` / ``version_read``), in the request's one transaction."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from fastapi.templating import Jinja2Templates
from jinja2 import StrictUndefined

from app.api.deps import DirectoryDep, SessionDep, StoreDep
from app.api.fast_path import payload_of
from app.api.jobs import job_read
from app.api.models import model_read, version_read
from app.api.monitoring import Seconds
from app.api.params import AliasName, IdPath, ModelName, VersionQuery
from app.api.schemas import DatasetRead, JobRead, TrialRead
from app.api.serving_stats import DEFAULT_SECONDS
from app.api.state import gateway_of
from app.auth import check_scope
from app.batch.output import output_file
from app.contracts.enums import JobStatus, Scope
from app.core.db import utcnow
from app.core.errors import KilnError
from app.datasets import service as datasets
from app.jobs import service as jobs
from app.kinds import JOB_KINDS
from app.registry import aliases
from app.registry import service as registry
from app.serving.codecs import PREDICT
from app.serving.codecs.base import NO_META
from app.ui import charts
from app.ui.job_sections import JobShown, build_page
from app.ui.lineage import version_tree
from app.ui.model_panel import version_panel
from app.ui.monitoring_panel import monitoring_panel
from app.ui.policy import HEADER, policy
from app.ui.registered import average_of, model_row, search_outcome
from app.ui.serving import model_traffic, serving_rows
from app.ui.session import (
    Viewer,
    ViewerDep,
    end_session,
    principal_for,
    same_site,
    start_session,
)

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.undefined = StrictUndefined  # a misspelt field fails loudly, never blank
templates.env.filters["clock"] = lambda seconds: _clock(float(seconds))
templates.env.globals["progress_share"] = lambda job: _progress_share(job)
router = APIRouter(prefix="/ui", include_in_schema=False)
FRAGMENT_HEADER = "x-kiln-fragment"  # the page's script asks for the live part only


def _page(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    webgl: bool = False,  # the page draws parallel coordinates: Plotly's parcoords uses WebGL
    **context: Any,
) -> Response:
    fragment = request.headers.get(FRAGMENT_HEADER) == "1"
    return templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "fragment": fragment, **context},
        headers={"Cache-Control": "no-store", HEADER: policy(webgl=webgl)},
    )


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _elapsed(job: JobRead) -> str:
    return "-" if job.progress.elapsed_s is None else _clock(job.progress.elapsed_s)


def _progress_share(job: JobRead) -> float:
    """How far along the job is, 0 to 1: its count out of the total, or for a search with a
    time budget the time spent, whichever is nearer its end."""
    if job.status == JobStatus.SUCCEEDED:
        return 1.0
    progress = job.progress
    shares = [progress.done / progress.total if progress.total else 0.0]
    if progress.time_budget_s:
        shares.append((progress.elapsed_s or 0.0) / progress.time_budget_s)
    return min(1.0, max(shares))


@router.get("", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return _page(request, "login.html", None, error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, directory: DirectoryDep, key: Annotated[str, Form(max_length=512)]
) -> Response:
    same_site(request)
    try:
        principal = await principal_for(directory, key.strip())
        check_scope(principal, Scope.READ)
    except KilnError as refused:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"viewer": None, "fragment": False, "error": refused.message},
            status_code=401,
        )
    response = RedirectResponse("/ui/jobs", status_code=303)
    start_session(response, request, principal, key.strip())
    return response


@router.post("/logout", response_class=RedirectResponse)
def logout(request: Request) -> Response:
    same_site(request)
    response = RedirectResponse("/ui/login", status_code=303)
    end_session(response)
    return response


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    rows, total = jobs.list_jobs(session, limit=100, offset=0)
    items = [job_read(row, session) for row in rows]
    return _page(
        request,
        "jobs.html",
        viewer,
        jobs=items,
        total=total,
        live=True,
        elapsed={item.id: _elapsed(item) for item in items},
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, session: SessionDep, viewer: ViewerDep, job_id: IdPath) -> Response:
    row = jobs.get_job(session, job_id)
    job = job_read(row, session)
    trials = [TrialRead.model_validate(trial) for trial in jobs.list_trials(session, job_id)]
    kind = JOB_KINDS.get(row.kind)
    page = build_page(
        JobShown(session, row, job, trials), kind.page_sections if kind is not None else ()
    )
    return _page(
        request,
        "job.html",
        viewer,
        webgl="parallel" in page.figures,
        job=job,
        trials=trials,
        objectives=page.objectives,
        figures=page.figures,
        notes=page.notes,
        report=page.report,
        output=page.output,
        outcome=search_outcome(session, job) if job.status == JobStatus.SUCCEEDED else None,
        epochs={t.number: charts.epochs_text(t) for t in trials},
        elapsed=_elapsed(job),
        live=job.status in ("queued", "running"),
        points={name: charts.points(f) for name, f in page.figures.items()},
    )


@router.post("/jobs/{job_id}/cancel", response_class=RedirectResponse)
def cancel(request: Request, session: SessionDep, viewer: ViewerDep, job_id: IdPath) -> Response:
    same_site(request)
    check_scope(viewer.principal, Scope.WRITE)
    jobs.cancel_job(session, job_id)
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@router.get("/jobs/{job_id}/output", response_class=FileResponse)
def job_output(
    session: SessionDep, store: StoreDep, viewer: ViewerDep, job_id: IdPath
) -> FileResponse:
    found = output_file(jobs.get_job(session, job_id), store)
    return FileResponse(found.path, media_type=found.media_type, filename=found.filename)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    rows, total = registry.list_models(session, limit=200, offset=0)
    return _page(
        request,
        "models.html",
        viewer,
        models=[model_row(session, row, model_read(session, row)) for row in rows],
        total=total,
    )


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    name: ModelName,
    version: VersionQuery = None,
) -> Response:
    """The model: aliases, lineage, versions, and a panel for one version (the one that
    serves, unless ``version`` names another)."""
    model = model_read(session, registry.get_model(session, name))
    rows, _ = registry.list_versions(session, name, limit=500, offset=0)
    versions = [version_read(session, name, row) for row in rows]
    history = {
        alias: aliases.alias_history(session, name=name, alias=alias)
        for alias in sorted(model.aliases)
    }
    shown = version or model.serving_version
    shown_row = registry.get_version(session, name, shown) if shown else None
    panel = (
        version_panel(session, str(request.base_url).rstrip("/"), name, shown_row)
        if shown_row is not None
        else None
    )
    averages = {row.version: average for row in rows if (average := average_of(row))}
    return _page(
        request,
        "model.html",
        viewer,
        model=model,
        versions=versions,
        tree=version_tree(name, versions),
        history=history,
        panel=panel,
        average=averages.get(shown) if shown else None,
        averages=averages,
        can_infer=viewer.can_infer,
        loop=monitoring_panel(session, name, shown, gateway_of(request.app).settings),
    )


@router.post("/models/{name}/predict")
async def try_prediction(
    request: Request,
    viewer: ViewerDep,
    name: ModelName,
    body: Annotated[str, Form(max_length=1_000_000)],
    version: Annotated[int, Form(ge=1, le=2**31 - 1)],
) -> Response:
    """The model page's "try a prediction": the body as ``POST /v1/models/{name}/predict``
    takes it, through the same path; the answer (or the refusal) as JSON."""
    same_site(request)
    check_scope(viewer.principal, Scope.INFER)
    try:
        core = gateway_of(request.app).core
        answer = await core.infer(PREDICT, name, version, payload_of(body.encode(), None), NO_META)
    except KilnError as refused:
        return JSONResponse({"detail": refused.message}, status_code=refused.status_code)
    return Response(answer.body, headers=answer.headers)


@router.post("/models/{name}/aliases", response_class=RedirectResponse)
def move_alias(
    request: Request,
    session: SessionDep,
    viewer: ViewerDep,
    name: ModelName,
    alias: Annotated[AliasName, Form()],
    version: Annotated[int, Form(ge=1, le=2**31 - 1)],
) -> Response:
    same_site(request)
    check_scope(viewer.principal, Scope.WRITE)
    aliases.set_alias(session, name=name, alias=alias, version=version)  # serving told on commit
    return RedirectResponse(f"/ui/models/{name}", status_code=303)


@router.get("/models/{name}/versions/{version}/artifact", response_class=FileResponse)
def download(
    session: SessionDep, store: StoreDep, viewer: ViewerDep, name: ModelName, version: IdPath
) -> FileResponse:
    row = registry.kept_artifact(registry.get_version(session, name, version), name)
    return FileResponse(
        store.version_file(row.artifact_key, row.sha256, f"the ONNX file of {name} v{version}"),
        media_type="application/octet-stream",
        filename=f"{name}-v{version}.onnx",
        headers={"X-Content-SHA256": row.sha256},
    )


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(request: Request, session: SessionDep, viewer: ViewerDep) -> Response:
    rows, total = datasets.list_datasets(session, limit=200, offset=0)
    return _page(
        request,
        "datasets.html",
        viewer,
        total=total,
        datasets=[DatasetRead.model_validate(row) for row in rows],
    )


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(
    request: Request, session: SessionDep, viewer: ViewerDep, dataset_id: IdPath
) -> Response:
    dataset = DatasetRead.model_validate(datasets.get_dataset(session, dataset_id))
    return _page(request, "dataset.html", viewer, dataset=dataset)


@router.get("/serving", response_class=HTMLResponse)
def serving_page(
    request: Request, session: SessionDep, viewer: ViewerDep, seconds: Seconds = DEFAULT_SECONDS
) -> Response:
    state = gateway_of(request.app)
    started: datetime = state.started_at
    models = model_traffic(session, state.seconds, seconds)
    return _page(
        request,
        "serving.html",
        viewer,
        live=True,
        models=models,
        seconds=seconds,
        charts=True,  # loaded from the start: a refresh may bring the first chart
        rows=serving_rows(state.metrics.registry),
        started=started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        uptime=_clock((utcnow() - started).total_seconds()),
    )

"""The model page's explanations: a version's global importance (each input column's mean
absolute attribution, stored in its metrics when it was registered or when its background
was sent) drawn as bars with what was measured, or why there is none and how to add it;
and the "try a prediction" form's Explain button, whose route sends the form's body
through ``POST /v1/models/{name}/explain`` in this process (``ui.js`` draws the first
row's attributions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Message

from app.api.explain import explain
from app.api.params import ModelName
from app.auth import check_scope
from app.contracts.enums import Scope
from app.core.errors import KilnError
from app.explain.data import ExplainRecord, Importance, Method, Output
from app.tables import ModelVersion
from app.ui.session import ViewerDep, same_site

Figure = dict[str, Any]
MARGIN = {"l": 60, "r": 20, "t": 30, "b": 50}
BAR_COLOUR = "#c2410c"  # the dashboard's accent (ui.css --accent)
router = APIRouter(prefix="/ui", include_in_schema=False)

METHODS: dict[Method, str] = {
    "tree_shap": "TreeSHAP on the LightGBM booster (exact)",
    "linear_exact": "exact Shapley values of the linear model",
    "sampled_shapley": "sampled Shapley values (permutations of the columns, each starting "
    "from a row of the version's background sample)",
}
OUTPUTS: dict[Output, str] = {
    "raw_score": "the raw score, not the probability (log-odds of each class against the "
    "other for two classes, the softmax's input for more; a regression's value)",
    "probability": "the probability of each class, as predict answers it",
    "score": "the uploaded graph's first output as it is",
    "value": "the predicted value",
}


@dataclass(frozen=True)
class ImportanceShown:
    """What the panel's "why it answers" part shows for one version: the bars and what
    they measure, or (``missing``) why there are none and how to add them."""

    figure: Figure | None
    columns: list[str]  # largest first
    method: Method | None
    method_note: str
    output: Output | None
    output_note: str
    rows: int | None  # the rows the mean was taken over
    rows_note: str  # what those rows were
    missing: str | None


def importance_bars(importance: Importance) -> Figure:
    """Mean |attribution| per input column as horizontal bars, the largest at the top."""
    ranked = sorted(importance.columns.items(), key=lambda item: item[1], reverse=True)
    drawn = list(reversed(ranked))  # Plotly stacks a horizontal bar chart from the bottom
    longest = max((len(name) for name, _ in ranked), default=10)
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [value for _, value in drawn],
                "y": [name for name, _ in drawn],
                "marker": {"color": BAR_COLOUR},
                "name": "mean |attribution|",
                "hovertemplate": "%{y}: %{x:.4g}<extra></extra>",
            }
        ],
        "layout": {
            "xaxis": {"title": {"text": f"mean |attribution| ({importance.output})"}},
            # Categories in the order drawn: columns named by position ("0", "1") would
            # otherwise make a numeric axis, sorted by name rather than by value.
            "yaxis": {"type": "category", "automargin": True, "title": {"text": ""}},
            "margin": {**MARGIN, "l": 20 + 7 * min(longest, 40)},
            "hovermode": "closest",
            "height": max(200, 28 * len(ranked) + 80),
        },
    }


def _missing(name: str, version: ModelVersion, record: ExplainRecord | None) -> str:
    put = f"PUT /v1/models/{name}/versions/{version.version}/explain/background"
    if record is None:
        why = (
            "an uploaded graph comes with no rows to explain it against"
            if version.source == "upload"
            else "no background sample was stored when it was registered"
        )
        return (
            f"No global importance: {why}, so POST /v1/models/{name}/explain answers 409. "
            f"Send 2 to 256 typical rows (as predict takes them) to {put}: explanations "
            "then work and the importance is computed on those rows."
        )
    parent = f" (version id {record.inherited_from})" if record.inherited_from else ""
    return (
        f"No global importance yet: this version is explained against its parent's "
        f"background sample{parent}, but its importance was not computed. Sending rows to "
        f"{put} computes it on them."
    )


def importance_shown(name: str, version: ModelVersion) -> ImportanceShown:
    """The version's stored global importance, ready to draw, or why it has none."""
    record = ExplainRecord.of(version.metrics)
    importance = record.importance if record is not None else None
    if record is None or importance is None:
        return ImportanceShown(
            None, [], None, "", None, "", None, "", _missing(name, version, record)
        )
    held_out = version.source == "search" and record.inherited_from is None
    rows_note = (
        "rows held out from its training"
        if held_out
        else "rows of the background sample sent for it"
    )
    method_note = METHODS[importance.method]
    if importance.method == "sampled_shapley":
        method_note += f", against {record.background_rows} background rows"
    ranked = sorted(importance.columns.items(), key=lambda item: item[1], reverse=True)
    return ImportanceShown(
        figure=importance_bars(importance),
        columns=[column for column, _ in ranked],
        method=importance.method,
        method_note=method_note,
        output=importance.output,
        output_note=OUTPUTS[importance.output],
        rows=importance.rows,
        rows_note=rows_note,
        missing=None,
    )


def _with_body(request: Request, body: bytes) -> Request:
    """``request`` (its app, headers, route key) carrying ``body`` as its body: what the
    API's explain reads, as if the JSON had been posted to it."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


@router.post("/models/{name}/explain")
async def try_explanation(
    request: Request,
    viewer: ViewerDep,
    name: ModelName,
    body: Annotated[str, Form(max_length=1_000_000)],
    version: Annotated[int, Form(ge=1, le=2**31 - 1)],
) -> Response:
    """The model page's "Explain": the body as ``POST /v1/models/{name}/explain`` takes
    it, through the same code; the answer (or the refusal) as JSON."""
    same_site(request)
    check_scope(viewer.principal, Scope.INFER)
    try:
        answer = await explain(_with_body(request, body.encode()), name, version)
    except KilnError as refused:
        return JSONResponse({"detail": refused.message}, status_code=refused.status_code)
    if not isinstance(answer, bytes):
        answer = answer.model_dump_json(by_alias=True).encode()
    return Response(answer, media_type="application/json")

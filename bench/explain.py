"""Explain benchmark (issue 46): the latency of explaining one row of a 20-column table
(numbers with gaps, counts, categories of 3 to 40 levels and a date; generated, seeded)
for a version of each table family registered as a search registers it (``mlp``, ``gbdt``,
``linear``, ``forest`` and an ``average`` of the MLP and the GBDT; ``cnn`` takes images,
not tables), beside the predict latency of the same rows measured in the same run (the
reference, interleaved call by call):

  in process: the engine's work for one row (``app.explain``: the perturbed batch, one
      onnxruntime run of it, the attributions and the answer's rows) vs one onnxruntime
      run of the row, on the served graph (preprocessing in front) with the gateway's
      thread count;
  over HTTP: ``POST /v1/models/{name}/explain`` vs ``/predict`` on a ``kiln serve``
      gateway (no worker), one keep-alive client, the explainer already cached.

Goals (p50, this machine): <= 20 ms for a network (sampled Shapley: also shown for the
forest and the average, explained the same way), <= 2 ms for a GBDT (TreeSHAP).

Agreement with the ``shap`` package (``bench`` extra; skipped, saying so, when it is not
installed): see ``bench/explain_shap.py``.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/explain.py [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.core.config import Settings, load_settings  # noqa: E402
from app.core.migrate import upgrade_to_head  # noqa: E402
from app.evaluation.sessions import open_session  # noqa: E402
from app.explain.explainer import Explainer  # noqa: E402
from app.explain.players import Feeds  # noqa: E402
from bench import explain_shap  # noqa: E402
from bench.explain_versions import LABELS, TRAIN, Table, Version, make_table, register  # noqa: E402
from bench.harness import kiln_server  # noqa: E402

FAMILIES = ("mlp", "gbdt", "linear", "forest", "average")
GOAL_MS = {"tree_shap": 2.0, "sampled_shapley": 20.0}  # p50 per method (none for linear)
WARMUP = 10
Run = Callable[[Feeds], np.ndarray]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one kind, in the order they ran."""

    seconds: list[float]

    def ms(self, q: float) -> float:
        return float(np.percentile(self.seconds, q) * 1000)


def runner(version: Version, threads: int) -> Run:
    """onnxruntime on the version's served graph: its first output for ``feeds``."""
    session = open_session(version.onnx, threads)
    output = version.signature.output.name

    def run(feeds: Feeds) -> np.ndarray:
        result: np.ndarray = session.run([output], feeds)[0]
        return result

    return run


def explainer_of(version: Version, table: Table, run: Run) -> Explainer:
    """The version's explainer, as the gateway builds and caches it."""
    explainer = Explainer.build(
        version.record,
        version.data,
        signature=version.signature,
        labels=LABELS,
        encoding=table.encoding,
        uploaded=False,
    )
    if not explainer.ready:
        explainer = explainer.with_background_output(run(explainer.background_feeds()))
    return explainer


def in_process(
    explainer: Explainer, run: Run, rows: list[Feeds], repeats: int
) -> tuple[Timing, Timing, dict[str, float]]:
    """Predict and explain of one row, interleaved, cycling over ``rows``; the explain's
    median milliseconds per stage."""
    predict, explain = [], []
    stages: dict[str, list[float]] = {"perturb": [], "run": [], "attribute": [], "answer": []}
    for index in range(WARMUP + repeats):
        feeds = rows[index % len(rows)]
        start = time.perf_counter()
        run(feeds)
        middle = time.perf_counter()
        batch = explainer.feeds_to_run(feeds)
        built = time.perf_counter()
        output = run(batch)
        ran = time.perf_counter()
        attributed = explainer.attribute(feeds, output)
        attributed_at = time.perf_counter()
        explainer.answer_rows(attributed, output[:1])
        end = time.perf_counter()
        if index >= WARMUP:
            predict.append(middle - start)
            explain.append(end - middle)
            for name, seconds in zip(
                stages,
                (built - middle, ran - built, attributed_at - ran, end - attributed_at),
                strict=True,
            ):
                stages[name].append(seconds)
    medians = {name: float(np.median(values) * 1000) for name, values in stages.items()}
    return Timing(predict), Timing(explain), medians


def over_http(
    settings: Settings, table: Table, names: list[str], repeats: int
) -> dict[str, tuple[Timing, Timing]]:
    """Predict and explain of one row per request on a ``kiln serve`` gateway."""
    records = [table.record(index) for index in range(TRAIN, TRAIN + 50)]
    results: dict[str, tuple[Timing, Timing]] = {}
    with kiln_server(settings.data_dir, 0) as kiln, kiln.client() as client:
        for name in names:
            predict, explain = [], []
            for index in range(WARMUP + repeats):
                body = {"inputs": [records[index % len(records)]]}
                timed = []
                for path in ("predict", "explain"):
                    start = time.perf_counter()
                    response = client.post(f"/v1/models/{name}/{path}", json=body)
                    timed.append(time.perf_counter() - start)
                    if response.status_code != 200:
                        raise RuntimeError(f"{path} of {name}: {response.text}")
                if index >= WARMUP:
                    predict.append(timed[0])
                    explain.append(timed[1])
            results[name] = (Timing(predict), Timing(explain))
    return results


def goal_cell(method: str, p50_ms: float) -> str:
    goal = GOAL_MS.get(method)
    if goal is None:
        return "—"
    return f"≤ {goal:g} ms: {'met' if p50_ms <= goal else 'NOT met'}"


def latency_lines(
    versions: dict[str, Version],
    explainers: dict[str, Explainer],
    local: dict[str, tuple[Timing, Timing, dict[str, float]]],
    remote: dict[str, tuple[Timing, Timing]],
) -> list[str]:
    lines = [
        "| family | method | rows run | predict p50 / p95 | explain p50 / p95 | p50 ratio | "
        "goal (p50) | HTTP predict p50 / p95 | HTTP explain p50 / p95 | HTTP p50 ratio | "
        "goal over HTTP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for family, version in versions.items():
        method = version.record.method
        predict, explain, _ = local[family]
        http_predict, http_explain = remote.get(family, (None, None))
        cells = [
            family,
            method,
            str(explainers[family].rows_to_run(1)),
            f"{predict.ms(50):.3f} / {predict.ms(95):.3f} ms",
            f"{explain.ms(50):.2f} / {explain.ms(95):.2f} ms",
            f"{explain.ms(50) / predict.ms(50):.1f}x",
            goal_cell(method, explain.ms(50)),
        ]
        if http_predict is not None and http_explain is not None:
            cells += [
                f"{http_predict.ms(50):.2f} / {http_predict.ms(95):.2f} ms",
                f"{http_explain.ms(50):.2f} / {http_explain.ms(95):.2f} ms",
                f"{http_explain.ms(50) / http_predict.ms(50):.1f}x",
                goal_cell(method, http_explain.ms(50)),
            ]
        else:
            cells += ["—"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Where an in-process explain's time goes (median ms per stage): the perturbed batch "
        "(sampled: every background row x every step, as raw columns), onnxruntime on it "
        "(preprocessing graph and model), the attributions, the answer's rows.",
        "",
        "| family | perturb | run | attribute | answer |",
        "|---|---|---|---|---|",
    ]
    for family in versions:
        stages = local[family][2]
        lines.append(
            f"| {family} | "
            + " | ".join(
                f"{stages[name]:.3f}" for name in ("perturb", "run", "attribute", "answer")
            )
            + " |"
        )
    return lines


def agreement(
    settings: Settings, table: Table, versions: dict[str, Version], threads: int
) -> list[str]:
    """The shap comparison's lines (or why it was skipped)."""
    shap = explain_shap.shap_module()
    if shap is None:
        return [
            "shap is not installed: agreement with it was not measured "
            '(`.venv/bin/pip install -e ".[bench]"` installs it).'
        ]
    results = []
    feeds = explain_shap.held_out(table, TRAIN, explain_shap.ROWS)
    for family, compare in (
        ("gbdt", explain_shap.tree_agreement),
        ("linear", explain_shap.linear_agreement),
    ):
        run = runner(versions[family], threads)
        results.append(
            compare(shap, versions[family], explainer_of(versions[family], table, run), feeds)
        )
    small = make_table(columns=6, seed=1)
    few = explain_shap.held_out(small, TRAIN, explain_shap.SAMPLED_ROWS)
    for family in ("mlp", "forest", "average"):
        version = register(settings, small, family, f"small-{family}")
        run = runner(version, threads)
        explainer = explainer_of(version, small, run)
        results.append(explain_shap.sampled_agreement(shap, version, explainer, few, run))
    return [
        f"shap {shap.__version__}. Exact methods: raw scores (each class's input to the "
        f"softmax), {explain_shap.ROWS} held-out rows of the 20-column table. Sampled "
        "Shapley (32 antithetic permutations, one per background row): class "
        f"probabilities, {explain_shap.SAMPLED_ROWS} held-out rows of a 6-column table "
        "(four numbers, a category, a date), against the exact Shapley values over the "
        "same 32 background rows. Values per column (one-hot and date parts folded), per "
        "class.",
        "",
        *explain_shap.agreement_lines(results),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per family")
    parser.add_argument("--no-http", action="store_true", help="in-process timings only")
    parser.add_argument("--no-shap", action="store_true", help="skip the agreement with shap")
    parser.add_argument("--write", action="store_true", help="write bench/results/explain.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(data_dir=Path(folder) / "data")
        upgrade_to_head(settings.database_url)
        table = make_table(columns=20, seed=0)
        versions = {family: register(settings, table, family, family) for family in FAMILIES}
        rows = [table.feeds(slice(i, i + 1)) for i in range(TRAIN, TRAIN + 50)]
        explainers: dict[str, Explainer] = {}
        local = {}
        for family, version in versions.items():
            run = runner(version, settings.ort_threads)
            explainers[family] = explainer_of(version, table, run)
            local[family] = in_process(explainers[family], run, rows, args.repeats)
        remote = {} if args.no_http else over_http(settings, table, list(versions), args.repeats)
        shap_lines = (
            [] if args.no_shap else agreement(settings, table, versions, settings.ort_threads)
        )
    lines = [
        "# Explain benchmark",
        "",
        f"`bench/explain.py` on {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, onnxruntime with {settings.ort_threads} thread(s) "
        f"(the gateway's `ort_threads`); {args.repeats} timed calls per family after "
        f"{WARMUP} warm-up calls, one row each (cycling over 50 held-out rows), predict "
        "and explain interleaved call by call; ratios are explain / predict p50 of the same "
        f"run. Load average (1 min) {load_before[0]:.2f} at the start, "
        f"{os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} cores, shared with other "
        "work).",
        "",
        f"Table: {table.width} columns (13 numbers, 4 of them with 5% gaps; 2 counts; "
        "categories of 3, 5, 12 and 40 levels; a date), "
        f"{table.encoding.width} encoded features, 3 classes; versions fitted on "
        f"{TRAIN} rows with the families' defaults (the MLP: two 64-wide layers), explained "
        "against 32 background rows (the GBDT stopped early at "
        f"{versions['gbdt'].data.booster.count('Tree=') if versions['gbdt'].data.booster else 0}"
        " trees: rounds x classes). `rows run`: the rows one explained row sends through "
        "the graph.",
        "",
        "## Latency of one row",
        "",
        *latency_lines(versions, explainers, local, remote),
        "",
        "## Agreement with shap",
        "",
        *(shap_lines or ["Skipped (`--no-shap`)."]),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        (ROOT / "bench" / "results" / "explain.md").write_text(text)


if __name__ == "__main__":
    main()

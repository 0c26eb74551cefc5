"""``kiln datasets|jobs|models|predict``: the client's calls from a terminal. The server's
URL and key come from ``--url`` / ``--api-key`` or ``KILN_URL`` / ``KILN_API_KEY``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from modelkiln.client import Client, KilnApiError
from modelkiln.csv_predict import predict_csv
from modelkiln.explain import add_explain_command
from modelkiln.loop_commands import add_loop_commands
from modelkiln.progress import best_text, count_text, time_text, watch_job
from modelkiln.show import show_dataset, show_job


def _client(args: argparse.Namespace) -> Client:
    if not (args.api_key or os.environ.get("KILN_API_KEY")):
        raise ValueError(
            "no API key: pass --api-key KEY or set KILN_API_KEY (kiln serve "
            "saved an admin key in kiln-data/admin.key)"
        )
    return Client(args.url, args.api_key)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _table(rows: list[list[Any]], header: list[str]) -> None:
    cells = [header, *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def datasets_upload(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.upload_dataset(
            args.file, args.target, name=args.name, task=args.task, columns=args.columns
        )
    if args.json:
        _print_json(dataset.data)
    else:
        print(
            f"dataset {dataset.id}: {dataset.name}, {dataset.rows} rows, {dataset.task} "
            f"of {dataset.target!r}"
        )
    return 0


def datasets_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.datasets(limit=args.limit)
    if args.json:
        _print_json([d.data for d in items])
    else:
        _table(
            [[d.id, d.name, d.rows, d.task, d.target] for d in items],
            ["ID", "NAME", "ROWS", "TASK", "TARGET"],
        )
    return 0


def _search_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.spec:
        text = sys.stdin.read() if args.spec == "-" else Path(args.spec).read_text()
        spec: dict[str, Any] = json.loads(text)
        return spec
    if args.dataset is None or args.model is None:
        raise ValueError("give --dataset and --model (or a whole job as --spec FILE)")
    search: dict[str, str | int | float] = {}
    for flag in ("algorithm", "max_trials", "timeout_s", "seed"):
        if getattr(args, flag) is not None:
            search[flag] = getattr(args, flag)
    return {
        "kind": "search",
        "dataset_id": args.dataset,
        "model_name": args.model,
        "search": search,
    }


def jobs_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.submit(_search_spec(args), idempotency_key=args.idempotency_key)
        if args.json and not args.watch:
            _print_json(job.data)
            return 0
        print(f"job {job.id} {job.status}", file=sys.stderr)
        return watch_job(client, job.id) if args.watch else 0


def jobs_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return watch_job(client, args.job_id, poll_s=args.poll)


def jobs_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.jobs(status=args.status, limit=args.limit)
    if args.json:
        _print_json([j.data for j in items])
    else:
        _table(
            [
                [
                    j.id,
                    j.kind,
                    j.status,
                    j.model_name,
                    count_text(j),
                    time_text(j),
                    best_text(j) if j.best_value is not None else None,
                ]
                for j in items
            ],
            ["ID", "KIND", "STATUS", "MODEL", "PROGRESS", "TIME", "BEST"],
        )
    return 0


def jobs_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.job(args.job_id)
    if args.json:
        _print_json(job.data)
    else:
        show_job(job)
    return 0


def datasets_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.dataset(args.dataset_id)
    if args.json:
        _print_json(dataset.data)
    else:
        show_dataset(dataset)
    return 0


def jobs_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.cancel(args.job_id)
    print(f"job {job.id} {job.status}")
    return 0


def models_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.models()
    if args.json:
        _print_json([m.data for m in items])
    else:
        _table(
            [
                [
                    m.name,
                    m.task,
                    m.latest_version,
                    ", ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())),
                ]
                for m in items
            ],
            ["NAME", "TASK", "LATEST", "ALIASES"],
        )
    return 0


def models_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = client.model(args.name)
        versions = client.versions(args.name)
    if args.json:
        _print_json({"model": model.data, "versions": [v.data for v in versions]})
        return 0
    aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(model.aliases.items())) or "none"
    print(f"{model.name} ({model.task}); aliases: {aliases}")
    rows = []
    for v in versions:
        parent = v.lineage.parent
        origin = (
            f"{parent.model} v{parent.version} by {v.lineage.method}"
            if parent
            else f"{v.source} (job {v.lineage.job_id})"
        )
        score = next(
            (f"{k}={v.metrics[k]:.4g}" for k in ("accuracy", "r2", "rmse") if k in v.metrics),
            "",
        )
        rows.append(
            [
                f"v{v.version}",
                v.status,
                score,
                f"{v.size_bytes / 1024:.1f} KiB",
                "" if v.latency_p50_ms is None else f"{v.latency_p50_ms:.3f} ms",
                *_footprint_cells(v.metrics),
                origin,
            ]
        )
    _table(rows, ["VERSION", "STATUS", "TEST", "SIZE", "P50", "MEM/RUN", "ENERGY/1K", "FROM"])
    return 0


def _footprint_cells(metrics: dict[str, Any]) -> list[str]:
    """A version's memory one run takes (1 / 256 rows) and its energy per 1,000 rows with
    where it comes from ('rapl' or 'estimate'); blank where it was not measured."""
    energy, source = metrics.get("energy_mj_per_1k_rows"), metrics.get("energy_source")
    if not isinstance(energy, int | float) or not isinstance(source, str):
        return ["", ""]
    sizes = [metrics.get("peak_memory_mb"), metrics.get("peak_memory_b256_mb")]
    memory = " / ".join(f"{size:.3f}" if isinstance(size, int | float) else "-" for size in sizes)
    return [f"{memory} MB", f"{energy:.4g} mJ ({source})"]


def predict(args: argparse.Namespace) -> int:
    out = args.out or str(Path(args.csv).with_suffix("")) + ".predictions.csv"
    if args.job:
        return _predict_as_job(args, out)
    with _client(args) as client:
        count = predict_csv(
            client,
            args.name,
            args.csv,
            out,
            version=args.version,
            batch_size=args.batch_size,
            probabilities=args.probabilities,
        )
    print(f"{count} rows predicted; written to {out}")
    return 0


def _predict_as_job(args: argparse.Namespace, out: str) -> int:
    """Upload the CSV as a batch prediction job, follow it, download its output."""
    with _client(args) as client:
        job = client.submit_batch_prediction(
            args.name, args.csv, version=args.version, key_columns=args.key or []
        )
        if watch_job(client, job.id, say_outcome=False) != 0:
            return 1
        client.download_output(job.id, out)
        rows = client.job(job.id).done
    print(f"{rows} rows predicted by job {job.id}; written to {out}")
    return 0


def _common(
    parser: argparse.ArgumentParser,
    handler: Callable[[argparse.Namespace], int],
    json_output: bool = True,
) -> None:
    parser.add_argument(
        "--url", help="gateway URL (default: $KILN_URL, else http://127.0.0.1:8000)"
    )
    parser.add_argument("--api-key", help="API key (default: $KILN_API_KEY)")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print the server's JSON")
    parser.set_defaults(func=handler, client_command=True)


def _with_client(handler: Callable[[argparse.Namespace, Client], int]) -> Callable[..., int]:
    def run_with(args: argparse.Namespace) -> int:
        with _client(args) as client:
            return handler(args, client)

    return run_with


def _column_types(text: str) -> dict[str, str]:
    """--columns: a JSON object of column name to type (the server checks the types)."""
    try:
        types = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(types, dict) or not all(isinstance(v, str) for v in types.values()):
        raise argparse.ArgumentTypeError('a JSON object of name to type: {"grade": "categorical"}')
    return types


def add_commands(commands: Any) -> None:
    """Add the client's commands to the ``kiln`` parser's subcommands."""
    datasets = commands.add_parser("datasets", help="upload, list and show datasets")
    sub = datasets.add_subparsers(dest="action", required=True)
    upload = sub.add_parser("upload", help="upload a CSV")
    upload.add_argument("file")
    upload.add_argument("--target", required=True, help="the column to predict")
    upload.add_argument("--name")
    upload.add_argument("--task", choices=["classification", "regression"])
    upload.add_argument(
        "--columns",
        type=_column_types,
        help='column types by name as JSON, e.g. \'{"grade": "categorical"}\' '
        "(as a profile's reason suggests)",
    )
    _common(upload, datasets_upload)
    listing = sub.add_parser("list", help="list datasets")
    listing.add_argument("--limit", type=int, default=50)
    _common(listing, datasets_list)
    shown = sub.add_parser(
        "show",
        help="a dataset's profile: each column's type (and why one "
        "is left out), gaps, values; the target; the rows left out",
    )
    shown.add_argument("dataset_id", type=int)
    _common(shown, datasets_show)

    jobs = commands.add_parser("jobs", help="submit, watch, list, show and cancel jobs")
    sub = jobs.add_subparsers(dest="action", required=True)
    submit = sub.add_parser("submit", help="submit a search job (or any job as --spec)")
    submit.add_argument("--dataset", type=int)
    submit.add_argument("--model", help="name of the model to register")
    submit.add_argument("--algorithm")
    submit.add_argument("--max-trials", type=int)
    submit.add_argument("--timeout-s", type=float)
    submit.add_argument("--seed", type=int)
    submit.add_argument("--spec", help="a JSON job spec file, or - for standard input")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--watch", action="store_true", help="show progress until it ends")
    _common(submit, jobs_submit)
    watch = sub.add_parser("watch", help="a live progress bar until the job ends")
    watch.add_argument("job_id", type=int)
    watch.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    _common(watch, jobs_watch, json_output=False)
    listing = sub.add_parser("list", help="list jobs, newest first")
    listing.add_argument(
        "--status", choices=["queued", "running", "succeeded", "failed", "cancelled"]
    )
    listing.add_argument("--limit", type=int, default=50)
    _common(listing, jobs_list)
    shown = sub.add_parser("show", help="one job: status, progress, plan, result or error")
    shown.add_argument("job_id", type=int)
    _common(shown, jobs_show)
    cancel = sub.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id", type=int)
    _common(cancel, jobs_cancel, json_output=False)

    models = commands.add_parser("models", help="list models and show their versions")
    sub = models.add_subparsers(dest="action", required=True)
    _common(sub.add_parser("list", help="list models"), models_list)
    show = sub.add_parser("show", help="a model's aliases and versions")
    show.add_argument("name")
    _common(show, models_show)

    predicting = commands.add_parser("predict", help="predict a CSV file, in batches")
    predicting.add_argument("name", help="model name")
    predicting.add_argument("--csv", required=True, help="rows to predict, with a header")
    predicting.add_argument("--out", help="where to write (default: FILE.predictions.csv)")
    predicting.add_argument("--version", type=int)
    predicting.add_argument("--batch-size", type=int, default=1000)
    predicting.add_argument(
        "--probabilities",
        action="store_true",
        help="also write a probability_<class> column per class (a classifier)",
    )
    predicting.add_argument(
        "--job",
        action="store_true",
        help="upload the file as a batch "
        "prediction job on the workers (for large files) and download "
        "its output",
    )
    predicting.add_argument(
        "--key",
        action="append",
        help="with --job: a column to copy next to the predictions (repeatable)",
    )
    _common(predicting, predict, json_output=False)
    add_explain_command(commands, lambda parser, handler: _common(parser, _with_client(handler)))
    add_loop_commands(
        commands,
        lambda parser, handler: _common(parser, _with_client(handler), json_output=False),
    )


def run(args: argparse.Namespace) -> int:
    """Run a client command; a refusal or a bad input is one line on stderr and exit 1."""
    try:
        code: int = args.func(args)
        return code
    except BrokenPipeError:  # `kiln ... | head`: the reader has what it wanted
        # stdout's buffer still holds what the pipe refused: point stdout at nothing, so
        # that the interpreter's flush at exit does not raise and print a second error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KilnApiError as error:
        print(f"kiln: {error.message} ({error.status})", file=sys.stderr)
    except httpx.HTTPError as error:
        print(f"kiln: cannot talk to the gateway: {error}", file=sys.stderr)
    except (ValueError, OSError) as error:
        print(f"kiln: {error}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nkiln: stopped watching (the job goes on)", file=sys.stderr)
    return 1

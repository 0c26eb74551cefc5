"""``kiln traffic|retrain|promote|drift``: the serving loop from a terminal: route a model's
traffic (one version, weights, a shadow), see how the shadow agrees and whether inputs
drift, make a dataset of logged requests and their labels, retrain, and promote."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from modelkiln.client import Client
from modelkiln.loop_answers import Alias
from modelkiln.progress import watch_job


def _weights(text: str) -> dict[int, int]:
    """'3:90,4:10' -> {3: 90, 4: 10}."""
    weights = {}
    for part in text.split(","):
        version, _, weight = part.partition(":")
        if not version.strip().isdigit() or not weight.strip().isdigit():
            raise ValueError(f"--split: {part!r} is not VERSION:PERCENT (e.g. 3:90,4:10)")
        weights[int(version)] = int(weight)
    return weights


def traffic_set(args: argparse.Namespace, client: Client) -> int:
    if (args.version is None) == (args.split is None):
        raise ValueError("give --version or --split, not both")
    policy = client.set_traffic(
        args.name,
        alias=args.alias,
        version=args.version,
        weights=_weights(args.split) if args.split else None,
        shadow=args.shadow,
    )
    _print_policy(policy)
    return 0


def _print_policy(policy: Alias | None) -> None:
    if policy is None:
        print(
            "no production alias: requests naming no version get the newest version a search "
            "or an upload registered, until the next registration pins the alias on it"
        )
        return
    routes = (
        ", ".join(f"v{arm.version} {arm.weight}%" for arm in policy.versions)
        if policy.versions
        else f"v{policy.version} 100%"
    )
    shadow = f"; shadow v{policy.shadow}" if policy.shadow else ""
    print(f"{policy.model} {policy.alias}: {routes}{shadow}")


def traffic_show(args: argparse.Namespace, client: Client) -> int:
    found = client.traffic(args.name)
    _print_policy(found.alias)
    shadow = found.alias.shadow if found.alias else None
    if shadow and not found.shadows:
        print(f"shadow v{shadow}: nothing compared yet")
    for stats in found.shadows:  # the current shadow's only: a promoted one is not listed
        agreement = "-" if stats.agreement is None else f"{stats.agreement:.2%}"
        print(
            f"shadow v{stats.shadow_version} beside v{stats.primary_version}: "
            f"{stats.rows} rows, agreement {agreement}, mean |diff| "
            f"{stats.mean_abs_diff or 0:.4g}, dropped {stats.dropped}, "
            f"failed {stats.failures}"
        )
    return 0


def drift_show(args: argparse.Namespace, client: Client) -> int:
    reports = client.drift(args.name, limit=1)
    if not reports:
        print(f"no drift window of {args.name!r} yet")
        return 0
    report = reports[0]
    print(
        f"v{report.version}, {report.rows} rows to {report.ended_at}; "
        f"drifted: {', '.join(report.drifted) or 'none'} (PSI > {report.threshold:g})"
    )
    for column in report.columns:
        psi = "-" if column.psi is None else f"{column.psi:.4f}"
        unseen = "" if column.unseen_share is None else f", unseen {column.unseen_share:.1%}"
        print(f"  {column.column}: PSI {psi}, gaps {column.missing_share:.1%}{unseen}")
    return 0


def from_log(args: argparse.Namespace, client: Client) -> int:
    made = client.dataset_from_log(args.name, args.labels, target=args.target, newest=args.newest)
    several = ""
    if made.ambiguous:
        taken = "the newest taken" if args.newest else "left out; --newest takes the newest"
        several = f", {made.ambiguous} matched several ({taken})"
    repeated = f"; {made.duplicates} repeat an earlier row's inputs" if made.duplicates else ""
    print(
        f"dataset {made.id}: {made.joined} labelled rows from {args.name!r}'s request "
        f"log ({made.unmatched} labels matched no logged request{several}{repeated})"
    )
    return 0


def retrain(args: argparse.Namespace, client: Client) -> int:
    options: dict[str, str | int | float] = {"mode": "fine_tune" if args.fine_tune else "search"}
    options.update(deploy=args.deploy, weight=args.weight, alias=args.alias)
    if args.version:
        options["version"] = args.version
    if args.timeout_s:
        options["timeout_s"] = args.timeout_s
    job = client.retrain(args.name, args.dataset, **options)
    print(f"job {job.id} {job.status}", file=sys.stderr)
    if not args.watch:
        return 0
    code = watch_job(client, job.id)
    finished = client.job(job.id).result
    deployment = finished.deployment if finished else None
    if deployment:
        what = "deployed" if deployment.deployed else f"not deployed ({deployment.reason})"
        print(f"v{deployment.version}: {what} as {deployment.mode} of {deployment.alias}")
    return code


def promote(args: argparse.Namespace, client: Client) -> int:
    rules = {"dataset_id": args.dataset} if args.dataset else {}
    answer = client.promote(args.name, args.version, args.gate, alias=args.alias, **rules)
    verdict = "promoted" if answer.promoted else "not promoted"
    print(f"v{args.version} {verdict}: {answer.reason}")
    return 0 if answer.promoted else 3


def add_loop_commands(commands: Any, common: Callable[..., None]) -> None:
    """Add the serving loop's commands to the ``kiln`` parser (``common`` adds --url,
    --api-key and --json, and binds the handler)."""
    traffic = commands.add_parser("traffic", help="route a model's traffic; see its shadow")
    sub = traffic.add_subparsers(dest="action", required=True)
    shown = sub.add_parser("show", help="the production alias's split, shadow and agreement")
    shown.add_argument("name")
    common(shown, traffic_show)
    setting = sub.add_parser("set", help="one version, or weights, and a shadow")
    setting.add_argument("name")
    setting.add_argument("--alias", default="production")
    setting.add_argument("--version", type=int)
    setting.add_argument("--split", help="VERSION:PERCENT,... summing to 100, e.g. 3:90,4:10")
    setting.add_argument("--shadow", type=int, help="a version that gets a copy of the traffic")
    common(setting, traffic_set)

    drift = commands.add_parser("drift", help="the newest drift window of a model's inputs")
    drift.add_argument("name")
    common(drift, drift_show)

    logged = commands.add_parser("from-log", help="a dataset of logged requests and labels")
    logged.add_argument("name", help="the model whose request log is read")
    logged.add_argument("--labels", required=True, help="CSV: request_id[,row],<target>")
    logged.add_argument("--target", default="label")
    logged.add_argument(
        "--newest",
        action="store_true",
        help="a label whose request_id was sent with several requests takes the newest",
    )
    common(logged, from_log)

    again = commands.add_parser("retrain", help="retrain a version on newer data, deploy it")
    again.add_argument("name")
    again.add_argument("--dataset", type=int, required=True, help="the newer dataset")
    again.add_argument("--version", type=int, help="default: the serving version")
    again.add_argument("--fine-tune", action="store_true", help="train on from its network")
    again.add_argument("--deploy", choices=["shadow", "canary", "none"], default="shadow")
    again.add_argument("--weight", type=int, default=10, help="a canary's percent")
    again.add_argument("--alias", default="production")
    again.add_argument("--timeout-s", type=float)
    again.add_argument("--watch", action="store_true", help="show progress until it ends")
    common(again, retrain)

    promoting = commands.add_parser("promote", help="give a version all of an alias's traffic")
    promoting.add_argument("name")
    promoting.add_argument("version", type=int)
    promoting.add_argument("--gate", choices=["labelled", "agreement", "manual"], required=True)
    promoting.add_argument("--dataset", type=int, help="the labelled dataset (labelled gate)")
    promoting.add_argument("--alias", default="production")
    common(promoting, promote)

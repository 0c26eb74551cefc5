"""``kiln explain``: the first rows of a CSV file explained by one version of a model,
printed as each row's prediction and its columns' attributions, largest first (for a
classifier, those of the predicted class)."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
from pathlib import Path
from typing import Any

from modelkiln.client import Client
from modelkiln.csv_predict import RowReader


def csv_inputs(client: Client, name: str, source: str, rows: int, version: int | None) -> list[Any]:
    """The first ``rows`` rows of ``source`` as the version's signature takes them."""
    chosen = client.version(name, version or client.model(name).serving_version)
    with Path(source).open(newline="") as src:
        reader = csv.reader(src)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{source} is empty: expected a header row")
        converter = RowReader(client, chosen, header)
        return [
            converter.convert(line, row)
            for line, row in enumerate(itertools.islice(reader, rows), start=2)
        ]


def shown(answer: dict[str, Any], top: int) -> list[str]:
    """Each explained row as lines: the prediction, then the attributions of the predicted
    class (or the value), largest first, and the base value they start from."""
    lines = [
        f"{answer['model']} v{answer['version']}: {answer['method']}, "
        f"{answer['output']} (base value + attributions = value)"
    ]
    for index, row in enumerate(answer["explanations"]):
        outputs = row["outputs"]
        chosen = next((o for o in outputs if o.get("class") == row["prediction"]), outputs[0])
        about = "" if chosen.get("class") is None else f" (class {chosen['class']})"
        lines.append(
            f"row {index + 1}: prediction {row['prediction']}; value {chosen['value']:.6g}"
            f"{about} = base {chosen['base_value']:.6g} + attributions"
        )
        ranked = sorted(chosen["attributions"].items(), key=lambda item: -abs(item[1]))
        width = max((len(column) for column, _ in ranked[:top]), default=0)
        lines += [f"  {column.ljust(width)}  {value:+.6g}" for column, value in ranked[:top]]
        if len(ranked) > top:
            rest = sum(value for _, value in ranked[top:])
            lines.append(f"  ({len(ranked) - top} more columns: {rest:+.6g} together)")
    return lines


def explain(args: argparse.Namespace, client: Client) -> int:
    inputs = csv_inputs(client, args.name, args.csv, args.rows, args.version)
    if not inputs:
        raise ValueError(f"{args.csv} has no rows under its header")
    answer = client.explain(args.name, inputs, version=args.version)
    if args.json:
        print(json.dumps(answer, indent=2, default=str))
    else:
        print("\n".join(shown(answer, args.top)))
    return 0


def add_explain_command(commands: Any, common: Any) -> None:
    """``kiln explain NAME --csv FILE``; ``common(parser, handler)`` adds the connection
    options and runs ``handler(args, client)``."""
    explaining = commands.add_parser(
        "explain", help="explain the predictions of the first rows of a CSV file"
    )
    explaining.add_argument("name", help="model name")
    explaining.add_argument("--csv", required=True, help="rows to explain, with a header")
    explaining.add_argument("--rows", type=int, default=1, help="how many rows (default 1)")
    explaining.add_argument("--version", type=int)
    explaining.add_argument(
        "--top", type=int, default=10, help="columns shown per row, largest first (default 10)"
    )
    common(explaining, explain)

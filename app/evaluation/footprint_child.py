"""The footprint child: ``python -m app.evaluation.footprint_child REQUEST_JSON``. Opens the
model the request names as serving opens it but without the memory arena, measures its
footprint on the request's rows (``app.evaluation.footprint.measure``) and prints it as one
JSON line. A process of its own, so that the peak memory it reads is the runs' alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.evaluation.energy import EnergySettings
from app.evaluation.footprint import decoded_feeds, measure
from app.evaluation.latency import rows_of
from app.evaluation.sessions import open_session


def main() -> None:
    """The child's entry point (see the module docstring)."""
    request = json.loads(Path(sys.argv[1]).read_text())
    session = open_session(Path(request["model"]), int(request["threads"]), arena=False)
    feeds = decoded_feeds(request["feeds"])
    batches = {}

    def run_rows(count: int) -> object:
        if count not in batches:
            batches[count] = rows_of(feeds, count)
        return session.run(None, batches[count])

    energy = EnergySettings(Path(request["powercap_dir"]), float(request["watts_per_core"]))
    print(measure(run_rows, energy).model_dump_json(), flush=True)


if __name__ == "__main__":
    main()

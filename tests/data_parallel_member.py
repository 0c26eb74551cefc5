"""A data-parallel member process for tests and the scale benchmark: ``python -m
tests.data_parallel_member WORK_FILE RENDEZVOUS_JSON RANK`` trains its share and exits 0,
or exits 3 when no group formed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from app.training.parallel import Rendezvous, train_as_member


def main() -> None:
    work, rendezvous, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    joined = train_as_member(Path(work).read_bytes(), Rendezvous(**json.loads(rendezvous)), rank)
    raise SystemExit(0 if joined else 3)


if __name__ == "__main__":
    main()

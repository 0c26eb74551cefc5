"""A running trial follows the search's deadline as the finish is re-planned: the reserve
grows when a slower model takes the lead, and the trial stops at the new deadline."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from app.core.db import utcnow
from app.search import trials
from app.training.stopping import TrainingStopped


@dataclass
class RunClock:
    """What ``_trial_clock`` reads of a search run: its trial limit and its deadline."""

    reserve_s: float
    trial_limit_s: float = math.inf
    budget_end: datetime = field(default_factory=lambda: utcnow() + timedelta(seconds=10))

    @property
    def deadline(self) -> datetime:
        return self.budget_end - timedelta(seconds=self.reserve_s)


def test_a_running_trial_stops_at_the_replanned_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trials, "DEADLINE_RECHECK_S", 0.0)
    run = RunClock(reserve_s=1.0)
    check = trials._trial_clock(run)  # type: ignore[arg-type]
    check()  # nine seconds to go
    run.reserve_s = 10.5  # a slower model leads: the finish needs more than is left
    time.sleep(0.05)
    with pytest.raises(TrainingStopped, match="the search's time ran out"):
        check()

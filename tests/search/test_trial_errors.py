"""What a failed trial shows: the message of our own errors (the user's data or spec),
otherwise only the exception's type and a reference into the worker's log, which has the
text and the traceback (exception text can carry paths and host:port)."""

from __future__ import annotations

import logging
import re
from types import SimpleNamespace
from typing import cast

import pytest

from app.core.errors import InvalidInput
from app.search.run import SearchRun
from app.search.trials import trial_error

RUN = cast(SearchRun, SimpleNamespace(job_id=7))


def test_an_unexpected_error_shows_a_reference_not_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leaky = RuntimeError("could not open /srv/kiln/data/secret.npz via 10.0.0.5:5432")
    with caplog.at_level(logging.ERROR):
        shown = trial_error(RUN, 3, leaky)
    assert "/srv" not in shown and "10.0.0.5" not in shown
    found = re.fullmatch(
        r"RuntimeError \(reference ([0-9a-f]{12})\); the worker's log has "
        r"the details",
        shown,
    )
    assert found is not None
    logged = caplog.records[-1]
    assert found.group(1) in logged.getMessage() and "trial 3" in logged.getMessage()
    assert logged.exc_info is not None and logged.exc_info[1] is leaky


def test_the_users_own_data_error_keeps_its_message() -> None:
    shown = trial_error(RUN, 1, InvalidInput("column 'age': 'ten' is not a number"))
    assert shown == "column 'age': 'ten' is not a number"

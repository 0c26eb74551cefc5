"""The model page's serving loop: how the production alias routes (weights, shadow), how
each shadow agrees with what answered, the newest drift window per input column, and the
model's latest events."""

from __future__ import annotations

from typing import Any

from app.core.db import Session
from app.registry import monitoring, traffic
from app.registry.service import get_model

EVENTS_SHOWN = 10


def monitoring_panel(session: Session, name: str) -> dict[str, Any]:
    """What the model page shows of the traffic loop (empty parts are left out)."""
    policy = traffic.serving_policy(session, get_model(session, name))
    newest = monitoring.latest_drift(session, name, 1)
    return {
        "policy": policy,
        "shadows": monitoring.shadow_stats(session, name),
        "drift": newest[0] if newest else None,
        "events": monitoring.events(session, name, EVENTS_SHOWN),
    }

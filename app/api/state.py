"""What the gateway holds for its lifetime, typed: one ``GatewayState`` per app, built by
``app.main.create_app`` and read by the routes, the inference fast path and gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from starlette.applications import Starlette

from app.core.config import Settings
from app.core.errors import BrokenInvariant
from app.jobs.queue import JobQueue
from app.serving.core import InferenceCore
from app.serving.directory import ServingDirectory
from app.serving.monitors import ServingMonitors
from app.serving.preload import Preload
from app.serving.runtime import SessionCache
from app.serving.sandbox import SandboxPool
from app.serving.seconds_shared import SharedSeconds
from app.storage import ArtifactStore

if TYPE_CHECKING:
    from app.api.metrics import ServingMetrics


@dataclass
class GatewayState:
    """Settings, the artifact store, the broker, the serving caches and the counters."""

    settings: Settings
    started_at: datetime  # what the dashboard's serving counters count from
    store: ArtifactStore
    queue: JobQueue
    sessions: SessionCache
    directory: ServingDirectory
    preload: Preload
    metrics: ServingMetrics
    monitors: ServingMonitors  # shadow copies, request logs, drift
    core: InferenceCore  # every inference request, whatever its protocol
    sandboxes: SandboxPool  # where uploaded graphs that are not bounded run
    ui_secret: bytes  # signs dashboard sessions (app.auth.ui_sessions)
    seconds: SharedSeconds  # per-second counters, this process's and the other gateways'


def gateway_of(app: Starlette) -> GatewayState:
    """The app's state (``app.state.gateway``)."""
    state = getattr(app.state, "gateway", None)
    if not isinstance(state, GatewayState):
        raise BrokenInvariant("the app was not built by create_app: no gateway state")
    return state

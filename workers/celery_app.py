"""The worker-side Celery app: same configuration as the gateway's producer, plus tasks."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_process_init

from app.core.config import get_settings
from app.core.db import dispose_engines
from app.jobs.queue import make_celery

settings = get_settings()
celery_app = make_celery(settings)
celery_app.conf.include = ["workers.tasks"]


@worker_process_init.connect
def _init_worker_process(**_: Any) -> None:
    """Fresh database connections per forked process; a fixed share of the CPUs for torch."""
    dispose_engines()
    import torch

    threads = settings.train_threads or max(
        1, (os.cpu_count() or 1) // max(1, int(celery_app.conf.worker_concurrency or 1))
    )
    torch.set_num_threads(threads)

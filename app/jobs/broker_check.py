"""Start-up check of a Redis broker's durability settings. Celery's messages live in Redis
lists: without an append-only file a Redis restart drops every queued message, and an
eviction policy other than ``noeviction`` lets Redis delete them under memory pressure.
The registry and its reaper re-send lost jobs either way, but only after
``KILN_QUEUED_RESEND_S``; the warning names the setting that would avoid the wait."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

# setting -> (value wanted, what goes wrong otherwise)
WANTED = {
    "appendonly": ("yes", "a Redis restart drops every queued job message"),
    "maxmemory-policy": (
        "noeviction",
        "Redis may evict queued job messages when memory runs short",
    ),
}


def redis_problems(broker_url: str, timeout_s: float = 2.0) -> list[str]:
    """What a Redis broker at ``broker_url`` lacks, one line per setting (empty for any
    other broker, or when all is well)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return []
    import redis

    client = redis.Redis.from_url(
        broker_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    try:
        problems = []
        for setting, (wanted, risk) in WANTED.items():
            value = str(client.config_get(setting).get(setting, "?"))
            if value != wanted:
                problems.append(
                    f"Redis {setting} is {value!r}: {risk}; set "
                    f"'{setting} {wanted}' (redis.conf or --{setting} {wanted})"
                )
        return problems
    except redis.ResponseError as error:  # CONFIG disabled (managed Redis)
        return [
            f"could not read the Redis configuration ({error}); make sure appendonly "
            "is yes and maxmemory-policy is noeviction"
        ]
    except redis.RedisError as error:
        return [f"could not reach the Redis broker to check its settings ({error})"]
    finally:
        client.close()


def warn_about_broker(broker_url: str) -> None:
    """Log each durability problem of the broker as a warning."""
    for problem in redis_problems(broker_url):
        logger.warning("broker: %s", problem)

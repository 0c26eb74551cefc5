"""Whether the broker answers, and a Redis broker's durability settings.

Reachability: the gateway's readiness (``/v2/health/ready``) and its job submissions ask
``broker_probe(url).problem()``, which asks the broker at most every ``PROBE_TTL_S`` (the
probe is hit often) and names ``KILN_BROKER_URL`` when it does not answer; a worker waits
for it at start (``wait_for_broker``) and exits naming the setting after its window.

Durability, checked at start-up: Celery's messages live in Redis lists: without an
append-only file a Redis restart drops every queued message, and an eviction policy other
than ``noeviction`` lets Redis delete them under memory pressure. The registry and its
reaper re-send lost jobs either way, but only after ``KILN_QUEUED_RESEND_S``; the warning
names the setting that would avoid the wait."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from app.core.db import ping_once

logger = logging.getLogger(__name__)

PROBE_TTL_S = 2.0  # how long an answer stands
PROBE_TIMEOUT_S = 1.0  # how long one probe waits for the broker

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


class CachedProbe:
    """A check's last answer, asked again once it is ``ttl_s`` old. Thread-safe: one
    caller runs the check (at most its own timeout) while the others wait for its answer;
    ``record`` sets the answer from what a caller saw (a send that failed)."""

    def __init__(
        self,
        check: Callable[[], None],
        describe: Callable[[BaseException], str],
        *,
        ttl_s: float = PROBE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check, self._describe, self._ttl_s, self._clock = check, describe, ttl_s, clock
        self._lock = threading.Lock()
        self._answer: str | None = None
        self._at: float | None = None

    def problem(self) -> str | None:
        """None when the check passed less than ``ttl_s`` ago (or passes now), else why not."""
        with self._lock:
            if self._at is None or self._clock() - self._at >= self._ttl_s:
                try:
                    self._check()
                except Exception as error:
                    self._answer = self._describe(error)
                else:
                    self._answer = None
                self._at = self._clock()
            return self._answer

    def expire(self) -> None:
        """Ask again at the next question, whatever the age of the last answer."""
        with self._lock:
            self._at = None

    def record(self, error: BaseException | None) -> None:
        """Take what a caller just saw as the answer (None: it worked)."""
        with self._lock:
            self._answer = None if error is None else self._describe(error)
            self._at = self._clock()


def shown_url(url: str) -> str:
    """``url`` with any password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def reach(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Ask the broker at ``url`` for an answer; raises when it gives none in time."""
    if url.startswith(("redis://", "rediss://")):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # one try: the probe is asked again soon enough
        )
        try:
            client.ping()
        finally:
            client.close()
    elif url.startswith("sqla+"):  # kombu's SQLAlchemy transport: the database behind it
        ping_once(url.removeprefix("sqla+"), timeout_s)
    else:
        from kombu import Connection

        with Connection(url, connect_timeout=timeout_s) as connection:
            connection.ensure_connection(max_retries=0, timeout=timeout_s)


def unreachable(url: str, error: BaseException) -> str:
    """One line naming the setting, the URL (no password) and the broker's error."""
    reason = " ".join(str(error).split()).rstrip(".") or type(error).__name__
    return f"the broker at {shown_url(url)} (KILN_BROKER_URL) does not answer: {reason}"[:500]


@functools.lru_cache(maxsize=32)
def broker_probe(url: str) -> CachedProbe:
    """The process's one probe of the broker at ``url`` (readiness and submissions share
    its answer, and a failed send sets it)."""
    return CachedProbe(functools.partial(reach, url), functools.partial(unreachable, url))


def wait_for_broker(
    url: str,
    window_s: float,
    *,
    interval_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """Ask the broker until it answers or ``window_s`` has passed: None once it answered,
    else one line saying why not (a worker's start: it exits with that rather than retry
    in silence). The first failure is logged with how long this waits."""
    deadline = clock() + window_s
    told = False
    while True:
        try:
            reach(url)
            return None
        except Exception as error:
            problem = unreachable(url, error)
        left = deadline - clock()
        if left <= 0:
            return (
                f"{problem}, for {window_s:g} s (KILN_BROKER_STARTUP_S); check the URL "
                "and that the broker runs"
            )
        if not told:
            logger.warning(
                "%s; waiting up to %g s for it (KILN_BROKER_STARTUP_S)", problem, window_s
            )
            told = True
        time.sleep(min(interval_s, left))

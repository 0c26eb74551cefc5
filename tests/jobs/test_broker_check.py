"""The start-up check of a Redis broker's durability settings, against the real Redis
where one runs (CI and the dev machine have one on 127.0.0.1:6379)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app.jobs.broker_check import redis_problems, warn_about_broker
from tests.conftest import BROKER_URL

LOCAL_REDIS = BROKER_URL or "redis://127.0.0.1:6379/0"


def _redis() -> object:
    import redis

    client = redis.Redis.from_url(LOCAL_REDIS, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return client


def test_other_brokers_are_not_checked() -> None:
    assert redis_problems("sqla+sqlite:////tmp/broker.db") == []


def test_an_unreachable_redis_is_named() -> None:
    problems = redis_problems("redis://127.0.0.1:1/0", timeout_s=0.5)
    assert len(problems) == 1 and "could not reach the Redis broker" in problems[0]


def test_each_missing_setting_is_named(caplog: pytest.LogCaptureFixture) -> None:
    client = _redis()
    before = client.config_get("maxmemory-policy")["maxmemory-policy"]  # type: ignore[attr-defined]
    appendonly = client.config_get("appendonly")["appendonly"]  # type: ignore[attr-defined]
    client.config_set("maxmemory-policy", "allkeys-lru")  # type: ignore[attr-defined]
    try:
        problems = redis_problems(LOCAL_REDIS)
        with caplog.at_level(logging.WARNING, logger="app.jobs.broker_check"):
            warn_about_broker(LOCAL_REDIS)
    finally:
        client.config_set("maxmemory-policy", before)  # type: ignore[attr-defined]
    assert any("maxmemory-policy is 'allkeys-lru'" in p and "noeviction" in p for p in problems)
    assert any("appendonly" in p for p in problems) == (appendonly != "yes")
    assert len(caplog.records) == len(problems)
    if before == "noeviction" and appendonly == "yes":
        assert redis_problems(LOCAL_REDIS) == []


CLOSED = "redis://:never-shown@127.0.0.1:1/0"  # nothing listens on port 1


def test_an_unreachable_broker_is_one_line_naming_the_setting_without_its_password() -> None:
    from app.jobs.broker_check import reach, unreachable

    for url in (CLOSED, "sqla+sqlite:////nonexistent-kiln-dir/broker.db"):
        with pytest.raises(Exception) as raised:
            reach(url, timeout_s=0.5)
        line = unreachable(url, raised.value)
        assert "(KILN_BROKER_URL) does not answer: " in line and "\n" not in line
        assert "never-shown" not in line
    assert unreachable(CLOSED, OSError("refused")).startswith(
        "the broker at redis://:***@127.0.0.1:1/0 (KILN_BROKER_URL)"
    )


def test_the_embedded_broker_and_a_running_redis_answer(tmp_path: Path) -> None:
    from app.jobs.broker_check import reach

    reach(f"sqla+sqlite:///{tmp_path / 'broker.db'}")
    _redis()
    reach(LOCAL_REDIS)


def test_the_probe_asks_at_most_once_per_ttl_and_takes_what_a_sender_saw() -> None:
    from app.jobs.broker_check import CachedProbe

    now = [0.0]
    asked = []
    up = [False]

    def check() -> None:
        asked.append(now[0])
        if not up[0]:
            raise ConnectionError("refused")

    probe = CachedProbe(check, lambda error: f"down: {error}", ttl_s=2.0, clock=lambda: now[0])
    assert [probe.problem() for _ in range(50)] == ["down: refused"] * 50
    assert asked == [0.0]
    up[0] = True
    now[0] = 1.9
    assert probe.problem() == "down: refused"  # the answer stands for its 2 s
    now[0] = 2.0
    assert probe.problem() is None and asked == [0.0, 2.0]
    probe.record(ConnectionError("send failed"))  # a send failed: down at once
    assert probe.problem() == "down: send failed" and asked == [0.0, 2.0]
    now[0] = 4.0
    assert probe.problem() is None and asked == [0.0, 2.0, 4.0]


def test_the_probe_runs_one_check_at_a_time(tmp_path: Path) -> None:
    """Many readiness probes at once: one asks the broker, the others wait for its answer."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from app.jobs.broker_check import CachedProbe

    running, most = [0], [0]
    lock = threading.Lock()

    def check() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    probe = CachedProbe(check, str, ttl_s=60)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: probe.problem(), range(16)))
    assert answers == [None] * 16 and most[0] == 1


def test_one_probe_per_broker_url() -> None:
    from app.jobs.broker_check import broker_probe

    assert broker_probe(CLOSED) is broker_probe(CLOSED)
    assert broker_probe(CLOSED) is not broker_probe("redis://127.0.0.1:1/1")


def test_waiting_for_a_broker_that_never_answers_ends_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import time

    from app.jobs.broker_check import wait_for_broker

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="app.jobs.broker_check"):
        problem = wait_for_broker(CLOSED, 1.5, interval_s=0.25)
    assert 1.5 <= time.monotonic() - started < 10
    assert problem is not None and problem.startswith(
        "the broker at redis://:***@127.0.0.1:1/0 (KILN_BROKER_URL) does not answer: "
    )
    assert problem.endswith(
        ", for 1.5 s (KILN_BROKER_STARTUP_S); check the URL and that the broker runs"
    )
    [told] = caplog.records  # once, when it starts waiting; not at each try
    assert "waiting up to 1.5 s for it (KILN_BROKER_STARTUP_S)" in told.getMessage()


def test_waiting_for_a_broker_that_answers_is_quick(tmp_path: Path) -> None:
    from app.jobs.broker_check import wait_for_broker

    assert wait_for_broker(f"sqla+sqlite:///{tmp_path / 'broker.db'}", 5) is None


def test_a_broker_that_never_answers_is_given_up_after_the_timeout() -> None:
    """A port that takes the connection and says nothing (a wrong service, a hung Redis):
    one try, bounded by the timeout, so the probe never holds readiness up for long."""
    import socket
    import time

    from app.jobs.broker_check import reach

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        with pytest.raises(Exception, match=r"[Tt]imeout|timed out"):
            reach(url, timeout_s=0.5)
        assert time.monotonic() - started < 2.0

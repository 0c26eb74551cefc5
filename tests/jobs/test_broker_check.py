"""The start-up check of a Redis broker's durability settings, against the real Redis
where one runs (CI and the dev machine have one on 127.0.0.1:6379)."""

from __future__ import annotations

import logging

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

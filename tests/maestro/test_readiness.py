"""Readiness against real dependencies that the test stops, hangs and restarts."""

import os
import signal
import time

import pytest

from tests.support.processes import WebServer, project_env
from tests.support.services import PostgresServer, RedisServer


@pytest.fixture(scope="module")
def own_deps():
    postgres, redis = PostgresServer().start(), RedisServer().start()
    yield postgres, redis
    postgres.destroy()
    redis.destroy()


@pytest.fixture(scope="module")
def web(own_deps):
    postgres, redis = own_deps
    with WebServer(project_env(DATABASE_URL=postgres.url, REDIS_URL=redis.url, WEB_CONCURRENCY="1")) as server:
        yield server


def ready(web):
    started = time.monotonic()
    response = web.get("/api/ready")
    return response, time.monotonic() - started


def test_ready_when_both_answer(web):
    response, _ = ready(web)
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": {"status": "up"}, "redis": {"status": "up"}}


def test_stopped_postgres_makes_readiness_503_naming_it(web, own_deps):
    postgres, _ = own_deps
    postgres.stop()
    try:
        response, took = ready(web)
        body = response.json()
        assert response.status_code == 503
        assert body["failing"] == ["database"]
        assert body["checks"]["database"]["status"] == "down" and body["checks"]["database"]["error"]
        assert body["checks"]["redis"]["status"] == "up"
        assert took < 2.5
        assert web.get("/api/health").status_code == 200, "liveness must not depend on the database"
    finally:
        postgres.restart()
    assert ready(web)[0].status_code == 200


def test_stopped_redis_makes_readiness_503_naming_it(web, own_deps):
    _, redis = own_deps
    redis.stop()
    try:
        response, took = ready(web)
        assert response.status_code == 503
        assert response.json()["failing"] == ["redis"]
        assert took < 2.5
    finally:
        redis.start()


def test_hung_redis_answers_within_the_deadline(web, own_deps):
    _, redis = own_deps
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        response, took = ready(web)
        assert response.status_code == 503
        assert "redis" in response.json()["failing"]
        assert took < 2.5, f"readiness took {took:.2f}s with a hung Redis"
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)

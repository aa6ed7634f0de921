"""Liveness and readiness.

Liveness touches nothing. Readiness checks each dependency on its own thread against one overall
deadline, so a hung PostgreSQL or Redis turns into a 503 naming it within ~2 s instead of a hung
probe. The checks open fresh connections with short connect timeouts, so their threads end too.
The same checks run at each Prometheus scrape (`ReadinessCollector`), so the readiness alert does
not need a separate prober.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

from django.conf import settings
from django.db import connections
from django.http import JsonResponse

from maestro.api_errors import json_methods

READY_DEADLINE_SECONDS = 1.8
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")


def _check_database() -> None:
    connection = connections.create_connection("default")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


def _check_redis() -> None:
    from django_redis import get_redis_connection

    get_redis_connection("default").ping()


def readiness_checks() -> dict:
    checks = {"database": _check_database}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    return checks


def run_checks(checks: dict, deadline: float = READY_DEADLINE_SECONDS) -> dict[str, dict]:
    started = time.monotonic()
    futures = {name: _pool.submit(check) for name, check in checks.items()}
    wait(futures.values(), timeout=deadline)
    results = {}
    for name, future in futures.items():
        if not future.done():
            results[name] = {"status": "down", "error": f"no answer within {deadline:.1f}s"}
        elif future.exception() is not None:
            exc = future.exception()
            results[name] = {"status": "down", "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]}
        else:
            results[name] = {"status": "up"}
    results_ms = round((time.monotonic() - started) * 1000, 1)
    return {"checks": results, "duration_ms": results_ms}


class ReadinessCollector:
    """`maestro_ready` and `maestro_readiness_check_up{check}`, checked when scraped."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        checks = run_checks(readiness_checks())["checks"]
        ready = GaugeMetricFamily("maestro_ready", "1 when every readiness check passes (what /api/ready answers 200 for), else 0")
        ready.add_metric([], 1.0 if all(result["status"] == "up" for result in checks.values()) else 0.0)
        up = GaugeMetricFamily("maestro_readiness_check_up", "1 when the dependency answered the readiness check, else 0", labels=["check"])
        for name, result in sorted(checks.items()):
            up.add_metric([name], 1.0 if result["status"] == "up" else 0.0)
        yield ready
        yield up

    def describe(self):
        return []  # checked live; describing would run the checks at registration


@json_methods("GET")
def health(request):
    return JsonResponse({"status": "ok"})


@json_methods("GET")
def ready(request):
    outcome = run_checks(readiness_checks())
    failing = sorted(name for name, result in outcome["checks"].items() if result["status"] != "up")
    body = {"status": "ready" if not failing else "unavailable", **outcome}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=200 if not failing else 503)

"""Periodic registry jobs, scheduled by CELERY_BEAT_SCHEDULE in maestro/settings.py
(MCP_HEALTH_PROBE_INTERVAL_SECONDS)."""

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from mcp.services.registry import servers_probe_all

LOCK_KEY = "mcp:tasks:probe-all:running"


@shared_task(name="mcp.tasks.probe_all_servers", ignore_result=True)
def probe_all_servers() -> dict[str, str]:
    """Probe every enabled server over MCP and store each result; /metrics reads them from there.
    Each probe is bounded by its server's timeout, and several run at once. A round still running
    when the next is due (slow servers, short interval) makes the next one a no-op."""
    if not cache.add(LOCK_KEY, 1, settings.MCP_HEALTH_PROBE_INTERVAL_SECONDS * 4):
        return {}
    try:
        return servers_probe_all()
    finally:
        cache.delete(LOCK_KEY)

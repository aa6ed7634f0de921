"""Periodic registry and evidence jobs, scheduled by CELERY_BEAT_SCHEDULE in maestro/settings.py
(MCP_HEALTH_PROBE_INTERVAL_SECONDS, MCP_EVIDENCE_VERIFY_INTERVAL_SECONDS)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from mcp.services.evidence_chain import chains_advance
from mcp.services.registry import servers_probe_all

LOCK_KEY = "mcp:tasks:probe-all:running"
VERIFY_LOCK_KEY = "mcp:tasks:verify-chains:running"
VERIFY_SINCE_KEY = "mcp:tasks:verify-chains:since"
# Rows carry the time they were built, and commit a moment later: look back further than a round.
VERIFY_LOOKBACK = timedelta(minutes=5)


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


@shared_task(name="mcp.tasks.verify_evidence_chains", ignore_result=True)
def verify_evidence_chains() -> dict[str, int]:
    """Verify the evidence rows written since the last round (and each chain from #1 once a day),
    for at most most of an interval, so pages and the evidence API find chains verified to their
    head and only hash what is newer. One round at a time."""
    interval = settings.MCP_EVIDENCE_VERIFY_INTERVAL_SECONDS
    if not cache.add(VERIFY_LOCK_KEY, 1, interval * 4):
        return {}
    try:
        started = timezone.now()
        since = cache.get(VERIFY_SINCE_KEY)
        result = chains_advance(budget_s=interval * 0.8, since=since - VERIFY_LOOKBACK if since else None)
        cache.set(VERIFY_SINCE_KEY, started, None)
        return result
    finally:
        cache.delete(VERIFY_LOCK_KEY)

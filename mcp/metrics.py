"""Prometheus metrics of the registry (registered by McpConfig.ready()).

Server health is read from the database when /metrics is scraped, not kept in a process-local
gauge: the probes run in the Celery worker while /metrics is served by the web workers, so a gauge
set by the prober would never reach the scrape. One small query per scrape, every process agrees.
"""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger("mcp.metrics")

STATUSES = ("healthy", "unhealthy", "unreachable", "unknown")


class ServerHealthCollector(Collector):
    def collect(self):
        health = GaugeMetricFamily("maestro_mcp_server_healthy", "1 if the last live MCP probe of the server succeeded, else 0", labels=["server"])
        status = GaugeMetricFamily("maestro_mcp_server_health_status", "The last health status of the server (1 for the current one)", labels=["server", "status"])
        latency = GaugeMetricFamily("maestro_mcp_server_probe_latency_ms", "Latency of the last successful MCP probe, in milliseconds", labels=["server"])
        try:
            from mcp.models import McpServer

            rows = list(McpServer.objects.filter(enabled=True).values_list("name", "health_status", "health_latency_ms"))
        except Exception:
            # A scrape must not fail because the database is down: /api/ready reports that.
            logger.warning("cannot read server health for /metrics", exc_info=True)
            rows = []
        for name, current, latency_ms in rows:
            health.add_metric([name], 1.0 if current == "healthy" else 0.0)
            for value in STATUSES:
                status.add_metric([name, value], 1.0 if current == value else 0.0)
            if current == "healthy" and latency_ms is not None:
                latency.add_metric([name], float(latency_ms))
        yield health
        yield status
        yield latency

    def describe(self):
        return []  # collected live; describing would run the query at registration


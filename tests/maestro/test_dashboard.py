"""The Grafana dashboard, tested for real: Debian's Prometheus scrapes a live gateway (the web door
with two workers and run_grpc with two workers, on PostgreSQL, Redis and a real SDK upstream)
while real traffic runs (servers, sessions, invocations, a denial, an error, gRPC calls), then
every panel's PromQL is evaluated through Prometheus's HTTP API: each must parse and return data.
The alert rules are loaded into the same Prometheus and evaluated against the same data."""

from __future__ import annotations

import json
import math
import re
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from django.core.management import call_command

from tests.conftest import make_key
from tests.grpc.conftest import Client, GrpcProcess, channel_to
from tests.support.metrics import scrape
from tests.support.processes import ROOT, WebServer, project_env
from tests.support.prometheus import PrometheusServer
from tests.support.services import free_port, wait_until

# The live gateway needs the test database (the module's fixture writes and flushes it itself).
pytestmark = pytest.mark.django_db

DASHBOARD = ROOT / "docs/observability/grafana/mcp-dashboard.json"
ALERTS = ROOT / "docs/observability/prometheus/alerts.yml"
# Grafana's own variables, as Grafana would expand them for a short range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1m", "$__interval": "1s"}
# Metrics only the invoke path records; which maestro.metrics function records each.
DATA_PLANE = {
    "mcp_server_operation_duration_seconds": "record_server_operation",
    "mcp_client_operation_duration_seconds": "record_client_operation",
    "mcp_evidence_write_duration_seconds": "record_evidence_write",
    "mcp_evidence_batch_rows": "record_evidence_write",
    "mcp_invocations_in_flight": "invocation_in_flight",
}
REQUIRED_ROWS = ["Traffic", "Latency", "Errors", "Policy", "Sessions", "In flight", "Upstream servers", "Evidence", "gRPC", "Process health"]


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_targets() -> list[tuple[str, str]]:
    """(panel title / refId, expr) for every query of every panel."""
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in load_dashboard()["panels"] if panel["type"] != "row" for target in panel["targets"]
    ]


def expand(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


# --- the dashboard's shape ---------------------------------------------------------------------------


def test_the_dashboard_is_importable_with_a_datasource_variable_and_no_fixed_datasource():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] == "maestro-mcp" and dashboard["id"] is None
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": "${datasource}"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["datasource"] == reference and p["targets"] for p in panels)
    assert all(t["datasource"] == reference and t["expr"].strip() for p in panels for t in p["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert [p["title"] for p in dashboard["panels"] if p["type"] == "row"] == REQUIRED_ROWS


# --- a live gateway under Prometheus -------------------------------------------------------------------


class Traffic:
    """What an operator and runs do, over the real doors."""

    def __init__(self, web: WebServer, grpc_port: int, key: str, upstream_url: str):
        self.api = f"{web.base_url}/api/maestro/v1"
        self.headers = {"X-API-Key": key}
        self.grpc_port = grpc_port
        for name, url in (("dash-up", upstream_url), ("dash-down", f"http://127.0.0.1:{free_port()}/mcp")):
            assert httpx.post(f"{self.api}/mcp/servers", json={"name": name, "url": url}, headers=self.headers).status_code == 201

    def session(self, run: str, scopes: list[str]) -> dict:
        response = httpx.post(f"{self.api}/runs/{run}/mcp/sessions", json={"scopes": scopes}, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()

    def invoke(self, run: str, token: str, tool: str, arguments: dict) -> int:
        body = {"server": "dash-up", "tool": tool, "arguments": arguments}
        return httpx.post(f"{self.api}/runs/{run}/mcp/invoke", json=body, headers={"Authorization": f"Bearer {token}"}).status_code

    def round(self) -> None:
        run = f"run-dash-{uuid.uuid4().hex[:8]}"
        # the operator probes both servers (one is down) and opens sessions
        assert httpx.get(f"{self.api}/mcp/servers/dash-up/health", headers=self.headers).status_code == 200
        assert httpx.get(f"{self.api}/mcp/servers/dash-down/health", headers=self.headers).status_code == 503
        allowed = self.session(run, ["mcp:invoke"])
        listing_only = self.session(run, ["mcp:tools"])
        # the run calls tools over HTTP: successes, an upstream error, a policy denial
        assert [self.invoke(run, allowed["token"], "echo", {"text": f"call {n}"}) for n in range(4)] == [200] * 4
        assert self.invoke(run, allowed["token"], "boom", {}) == 502
        assert self.invoke(run, listing_only["token"], "echo", {"text": "denied"}) == 403
        # and over gRPC, on separate connections (so both workers serve some)
        for n in range(4):
            channel = channel_to(self.grpc_port)
            response, _ = Client(channel, allowed["token"]).invoke(run, "dash-up", "echo", {"text": f"grpc {n}"})
            assert response.result["content"][0]["text"] == f"grpc {n}"
            channel.close()
        channel = channel_to(self.grpc_port)
        with pytest.raises(grpc.RpcError) as denied:
            Client(channel, listing_only["token"]).invoke(run, "dash-up", "echo", {"text": "denied"})
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        channel.close()
        # the operator revokes a session
        assert httpx.delete(f"{self.api}/runs/{run}/mcp/sessions/{listing_only['sid']}", headers=self.headers).status_code == 204


def seen_by_prometheus(prometheus: PrometheusServer, web: WebServer, grpc_metrics: str) -> bool:
    """Whether Prometheus has scraped both doors since the last traffic (it holds their current totals)."""
    sessions = scrape(f"{web.base_url}/metrics").value("mcp_sessions_total")
    calls = scrape(grpc_metrics).value("mcp_grpc_requests_total")
    return wait_until(
        lambda: prometheus.value('sum(mcp_sessions_total{job="maestro-web"})') == sessions
        and prometheus.value('sum(mcp_grpc_requests_total{job="maestro-grpc"})') == calls,
        timeout=20,
    )


@pytest.fixture(scope="module")
def observed(django_db_setup, django_db_blocker, upstream):
    """Prometheus after two rounds of traffic (two, so that every counter has moved between scrapes)."""
    with django_db_blocker.unblock():
        key = make_key(["admin:mcp"])
    metrics_port = free_port()
    grpc_door = GrpcProcess(MCP_GRPC_WORKERS="2", MCP_GRPC_METRICS_BIND=f"127.0.0.1:{metrics_port}")
    try:
        with WebServer(project_env(WEB_CONCURRENCY="2")) as web, grpc_door:
            jobs = {"maestro-web": [f"127.0.0.1:{web.port}"], "maestro-grpc": [f"127.0.0.1:{metrics_port}"]}
            with PrometheusServer(jobs=jobs, rule_files=[ALERTS]) as prometheus:
                grpc_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
                assert wait_until(lambda: prometheus.value("sum(up)") == 2, timeout=20), prometheus.log_tail()
                traffic = Traffic(web, grpc_door.port, key, upstream.url())
                for _ in range(2):
                    traffic.round()
                    assert seen_by_prometheus(prometheus, web, grpc_metrics), prometheus.log_tail()
                results = {expr: prometheus.query(expand(expr)) for _, expr in panel_targets()}
                missing = {name for name in DATA_PLANE if never_recorded(prometheus, name)}
                rules = prometheus.get("/api/v1/rules")
                alerts = prometheus.get("/api/v1/alerts")
                yield {"results": results, "missing": missing, "rules": rules, "alerts": alerts}
    finally:
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def never_recorded(prometheus: PrometheusServer, name: str) -> bool:
    """No series at all, or a histogram that exists (unlabelled ones do from the start) but never observed."""
    if prometheus.series_exists(name):
        return False
    return not prometheus.series_exists(f"{name}_count") or prometheus.value(f"sum({name}_count)") == 0


def _metrics_in(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", name) for name in re.findall(r"\b((?:mcp|maestro)_[a-z0-9_]+)", expr)}


@pytest.mark.parametrize("expr", [expr for _, expr in panel_targets()], ids=[title for title, _ in panel_targets()])
def test_every_panel_query_parses_and_returns_data(observed, expr):
    answer = observed["results"][expr]
    assert answer["status"] == "success", f"Prometheus refused the query: {answer.get('error')}\n{expr}"
    values = [float(item["value"][1]) for item in answer["data"]["result"]]
    if not any(math.isfinite(value) for value in values):
        absent = sorted(_metrics_in(expr) & observed["missing"])
        wanted = ", ".join(f"{name} (the data plane must call maestro.metrics.{DATA_PLANE[name]})" for name in absent)
        pytest.fail(f"no data for {expr}\n" + (f"metric never recorded: {wanted}" if absent else f"result: {answer['data']['result']}"))


def test_the_alert_rules_load_and_evaluate_against_the_live_gateway(observed):
    (group,) = observed["rules"]["data"]["groups"]
    assert group["name"] == "maestro-mcp"
    assert {rule["name"]: rule["health"] for rule in group["rules"]} == {
        name: "ok" for name in ("McpInvocationErrorRatioHigh", "McpToolCallLatencyP99High", "McpUpstreamServerDown", "MaestroNotReady",
                                "MaestroScrapeDown", "McpEvidenceWriteFailures")
    }
    # The server that is down is already pending (it fires after 5 minutes); the healthy one is not
    pending = {(a["labels"]["alertname"], a["labels"].get("server")) for a in observed["alerts"]["data"]["alerts"]}
    assert ("McpUpstreamServerDown", "dash-down") in pending and ("McpUpstreamServerDown", "dash-up") not in pending

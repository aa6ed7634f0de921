"""The web server as deployed (python -m maestro.web): idle keep-alive clients never starve new ones,
and Django never sees the process environment."""

from __future__ import annotations

import httpx

from tests.support.processes import WebServer, project_env


def test_idle_keep_alive_connections_do_not_starve_a_new_client():
    # Given a worker with two threads, and more idle keep-alive clients than threads
    with WebServer(project_env(WEB_CONCURRENCY="1", MAESTRO_HTTP_THREADS="2")) as web:
        idle = [httpx.Client(base_url=web.base_url, timeout=5) for _ in range(4)]
        try:
            assert [client.get("/api/health").status_code for client in idle] == [200] * 4
            # When a new client arrives while they all keep their connections open
            with httpx.Client(base_url=web.base_url, timeout=3) as newcomer:
                response = newcomer.get("/api/health")
            # Then it is served at once (granian's backpressure counts connections, not calls)
            assert response.status_code == 200
        finally:
            for client in idle:
                client.close()


def test_requests_never_see_the_process_environment(monkeypatch):
    # The control plane's WSGI environ is built from the request alone (a2wsgi, behind the data
    # plane): nothing of os.environ (SESSION_SECRET, DATABASE_URL, ...) reaches Django's META.
    from a2wsgi import WSGIMiddleware

    from mcp.dataplane.app import DataPlane
    from tests.support.gateway import GatewayClient

    monkeypatch.setenv("SESSION_SECRET", "leak-" + "x" * 40)
    seen = {}

    def capture(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    GatewayClient(app=DataPlane(WSGIMiddleware(capture))).get("/admin/", headers={"x-probe": "1"})
    assert seen["REQUEST_METHOD"] == "GET" and seen["HTTP_X_PROBE"] == "1"
    assert "SESSION_SECRET" not in seen and "DATABASE_URL" not in seen and "PATH" not in seen

"""The web server as deployed (python -m maestro.web): idle keep-alive clients never starve new ones."""

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


def test_requests_never_see_the_process_environment(tmp_path):
    # Granian puts os.environ into every WSGI environ; the gateway must strip it before Django.
    from maestro import wsgi

    seen = {}

    def capture(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    app = wsgi._without_process_environment(capture)
    secret_name = next(iter(wsgi._PROCESS_ONLY))
    app({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "x", secret_name: "leak", "SESSION_SECRET": "leak"}, lambda *a: None)
    assert secret_name not in seen and "SESSION_SECRET" not in seen
    assert seen["REQUEST_METHOD"] == "GET" and seen["HTTP_HOST"] == "x"

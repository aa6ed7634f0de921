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

from django.apps import AppConfig


class McpConfig(AppConfig):
    name = "mcp"
    verbose_name = "MCP registry and evidence"

    def ready(self) -> None:
        from maestro import prometheus
        from mcp.metrics import ServerHealthCollector
        from mcp.services.catalog import RegistryDirectory
        from mcp.services.upstream_sessions import upstream_sessions_close
        from sessions_app import services as sessions

        # sessions_app knows nothing of the registry; the registry tells it what it needs.
        sessions.server_directory = RegistryDirectory()
        if upstream_sessions_close not in sessions.on_session_end:
            sessions.on_session_end.append(upstream_sessions_close)
        # Upstream health comes from the database, the same for every door: the web door serves it.
        prometheus.register_collector(ServerHealthCollector(), doors={"web"})

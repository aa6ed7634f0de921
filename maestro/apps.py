from django.apps import AppConfig


class MaestroConfig(AppConfig):
    name = "maestro"
    verbose_name = "Maestro MCP"

    def ready(self) -> None:
        from maestro import metrics, openapi, prometheus, telemetry  # noqa: F401  (metrics: defines them all; openapi registers the API key scheme)
        from maestro.health import ReadinessCollector

        telemetry.configure()
        prometheus.register_collector(ReadinessCollector())

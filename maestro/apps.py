from django.apps import AppConfig


class MaestroConfig(AppConfig):
    name = "maestro"
    verbose_name = "Maestro MCP"

    def ready(self) -> None:
        from maestro import openapi, telemetry  # noqa: F401  (openapi registers the API key scheme)

        telemetry.configure()

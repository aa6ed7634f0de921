from django.apps import AppConfig


class McpConfig(AppConfig):
    name = "mcp"
    verbose_name = "MCP registry and evidence"

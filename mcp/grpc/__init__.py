"""The gRPC door (maestro.mcp.v1.McpGateway): proto and generated stubs, servicer, interceptors,
the error-to-status table, metrics and the server that `manage.py run_grpc` runs. README, "gRPC transport"."""

"""The gateway as an MCP server: the per-run endpoint `/api/maestro/v1/runs/{runId}/mcp`
(streamable HTTP, revisions 2026-07-28 and 2025-11-25 / 2025-06-18 / 2025-03-26). Protocol
handling only; every call goes through the one core (mcp.services.invoke)."""

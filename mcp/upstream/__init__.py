"""The MCP client to upstream servers (DESIGN section 4). Import from `mcp.upstream.client`."""

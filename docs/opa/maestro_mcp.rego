# Example OPA policy for Maestro MCP. Load it with:
#   opa run --server --addr 127.0.0.1:8181 docs/opa/maestro_mcp.rego
# and start the gateway with OPA_URL=http://127.0.0.1:8181 (OPA_POLICY_PATH defaults to maestro/mcp/allow).
#
# The gateway POSTs {"input": ...} to /v1/data/maestro/mcp/allow with:
#   input.subject            {"type": "session", "sid": ..., "run": ...}
#   input.run                the run id
#   input.session            {"sid": ..., "scopes": [...], "servers": [server ids; empty = any]}
#   input.server             {"id": ..., "name": ...}
#   input.tool               the tool name
#   input.arguments_digest   SHA-256 of the canonical JSON arguments (never the arguments themselves)
#   input.transport          "http" or "grpc"
# The answer may be a boolean or {"allow": bool, "reason": string}. An undefined result denies, and
# so does an OPA that errors or is slower than OPA_TIMEOUT_MS (503 policy_unavailable).
package maestro.mcp

import rego.v1

default allow := {"allow": false, "reason": "no rule allows this call"}

# Tools whose names start with "delete" or "drop" are never callable through the gateway.
destructive if regex.match(`^(delete|drop)`, input.tool)

allow := {"allow": true, "reason": "read-only tool on an approved server"} if {
	not destructive
	input.server.name in {"files", "search", "everything"}
	"mcp:invoke" in input.session.scopes
}

allow := {"allow": false, "reason": sprintf("tool %q is destructive", [input.tool])} if destructive

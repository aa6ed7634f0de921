"""Domain errors raised by services. Transports map them to a status in one table each
(`maestro.api_errors` for HTTP, `mcp.grpc.status` for gRPC); services never know about either.

`code` is a stable, machine-readable string (e.g. "token_expired"); `message` is safe to show a
client: it never holds a secret, a stack trace or an upstream's raw body.
"""

from __future__ import annotations


class GatewayError(Exception):
    """`receipt`: the signed policy receipt when a policy decision was made before the failure
    (every door returns it: the x-ig-policy-receipt header, gRPC trailing metadata, MCP _meta)."""

    code = "error"
    receipt: str = ""

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None, receipt: str = ""):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}
        self.receipt = receipt

    def with_receipt(self, receipt: str) -> "GatewayError":
        """The same error, carrying the receipt of the decision made before it happened."""
        clone = type(self).__new__(type(self), *self.args)
        clone.__dict__.update(self.__dict__)
        clone.receipt = receipt
        return clone


class InvalidInput(GatewayError):
    code = "invalid_request"


class Unauthenticated(GatewayError):
    code = "unauthenticated"


class Forbidden(GatewayError):
    code = "forbidden"


class NotFound(GatewayError):
    code = "not_found"


class Conflict(GatewayError):
    code = "conflict"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"


class RateLimited(GatewayError):
    code = "rate_limited"


class UpstreamFailed(GatewayError):
    code = "upstream_error"


class Unavailable(GatewayError):
    code = "unavailable"


class UpstreamTimeout(GatewayError):
    code = "upstream_timeout"

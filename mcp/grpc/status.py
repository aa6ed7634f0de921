"""The gRPC door's one mapping from domain errors to status codes (maestro.api_errors is the HTTP one).

Codes follow gRPC's own HTTP mapping where it exists, with two choices made on purpose:
- UpstreamTimeout is DEADLINE_EXCEEDED (not UNAVAILABLE): the call ran out of its time, which is
  what a client's retry/deadline logic needs to see.
- PayloadTooLarge and RateLimited are RESOURCE_EXHAUSTED, like gRPC's own message-size errors. So is
  the in-flight limit; `x-ig-error-code` (payload_too_large / rate_limited / overloaded) tells them apart.
"""

from __future__ import annotations

import grpc

from maestro import errors

GRPC_STATUS: dict[type[errors.GatewayError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.Forbidden: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Conflict: grpc.StatusCode.ALREADY_EXISTS,
    errors.PayloadTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.RateLimited: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.UpstreamFailed: grpc.StatusCode.UNAVAILABLE,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.UpstreamTimeout: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# Trailing metadata keys, part of the public contract (README, "gRPC transport").
RECEIPT_KEY = "x-ig-policy-receipt"
ERROR_CODE_KEY = "x-ig-error-code"
OVERLOADED = "overloaded"


def status_for(exc: errors.GatewayError) -> grpc.StatusCode:
    # By class hierarchy, so a subclass a service adds later still maps to its parent's status.
    for cls in type(exc).__mro__:
        if cls in GRPC_STATUS:
            return GRPC_STATUS[cls]
    return grpc.StatusCode.INTERNAL

"""`make soak`'s verdicts, on log lines and figures made up to sit on either side of each rule (the
soak itself runs for minutes against the whole stack: `make soak SOAK_MINUTES=1`, not in the suite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bench.soak import RECOVERY_S, Outage, memory_verdict, outside_outages, server_failures

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()


def line(at: float, duration_ms: float, **fields) -> str:
    ts = datetime.fromtimestamp(T0 + at, tz=UTC).isoformat(timespec="milliseconds")
    return json.dumps({"ts": ts, "level": "INFO", "logger": "maestro.access", "msg": "request", "duration_ms": duration_ms, **fields})


def test_server_failures_are_http_5xx_and_grpc_failure_codes_with_their_lifetimes():
    lines = [
        line(10.0, 5000, method="POST", path="/api/maestro/v1/runs/r/mcp/invoke", status=503),
        line(11.0, 3, method="POST", path="/api/maestro/v1/runs/r/mcp/invoke", status=200),
        line(12.0, 2, method="GET", path="/api/maestro/v1/runs/r/mcp/tools", status=401),
        line(13.0, 4, rpc="/maestro.mcp.v1.McpGateway/Invoke", grpc_code="UNAVAILABLE"),
        line(14.0, 4, rpc="/maestro.mcp.v1.McpGateway/Invoke", grpc_code="PERMISSION_DENIED"),
        "[INFO] Started worker-1",
        json.dumps({"level": "WARNING", "msg": "no ts, no duration", "status": 500}),
    ]
    failures = server_failures(lines)
    assert [f["what"] for f in failures] == ["POST /api/maestro/v1/runs/r/mcp/invoke 503", "gRPC /maestro.mcp.v1.McpGateway/Invoke UNAVAILABLE"]
    assert abs(failures[0]["start"] - (T0 + 5.0)) < 0.01 and abs(failures[0]["end"] - (T0 + 10.0)) < 0.01


def test_a_failure_is_excused_only_when_its_lifetime_overlaps_an_outage_or_its_recovery():
    outage = Outage("postgres", start=T0 + 100, end=T0 + 105)

    def failure(start: float, end: float) -> dict:
        return {"start": T0 + start, "end": T0 + end, "what": "x"}

    started_during_ended_after = failure(104, 109)
    during_recovery = failure(105 + RECOVERY_S - 0.1, 105 + RECOVERY_S)
    before = failure(90, 99.9)
    after_recovery = failure(105 + RECOVERY_S + 0.1, 105 + RECOVERY_S + 0.2)
    found = outside_outages([started_during_ended_after, during_recovery, before, after_recovery], [outage])
    assert found == [before, after_recovery]


def test_memory_is_flat_within_16_mb_or_a_tenth_whichever_is_larger():
    flat = memory_verdict({"web": 200.0, "grpc": 100.0}, {"web": 219.0, "grpc": 115.0})
    assert flat["flat"] and flat["doors"]["web"]["growth_mb"] == 19.0
    grown = memory_verdict({"web": 200.0, "grpc": 100.0}, {"web": 221.0, "grpc": 100.0})
    assert not grown["flat"] and not grown["doors"]["web"]["flat"] and grown["doors"]["grpc"]["flat"]

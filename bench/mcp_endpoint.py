"""The MCP endpoint's budget (issue 11), against the running Stack:

6. `tools/call echo` through `POST .../runs/{runId}/mcp` (2026-07-28, and 2025-11-25 in an MCP
   session) against the same call through `POST .../mcp/invoke`, wrk at c32 each, one after the
   other in this scenario: the web door's CPU per call, and the ratio (budget: at most 1.2x).
7. 10,000 idle open streams: wrk holds 10,000 connections, each a `subscriptions/listen` stream
   (2026-07-28) that stays open; the web door's memory (RSS and PSS sums, sampled) while they are
   open, against its memory before (budget: within 1 GB), and how many are established.

Both drive wrk with bench/post.lua (one fixed request per connection, its headers and body from
the environment), like every other HTTP scenario.
"""

from __future__ import annotations

import json
import threading
import time

import httpx

from bench import procstat
from bench.scenarios import ECHO_ARGS, MODERN, Ctx, _per_call, invoke_body
from bench.stack import API
from bench.wrk import run_wrk

SESSION_VERSION = "2025-11-25"
STREAMS = 10_000
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "maestro-bench", "version": "1.0"}}


def _mcp_call(token: str, *, session_id: str | None = None) -> tuple[str, dict]:
    """tools/call echo through the endpoint (the bench session names one server: its own names)."""
    params = {"name": "echo", "arguments": ECHO_ARGS}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    if session_id is None:
        params["_meta"] = META
        headers.update({"MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
    else:
        headers.update({"MCP-Protocol-Version": SESSION_VERSION, "Mcp-Session-Id": session_id})
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}), headers


def _initialize(url: str, token: str) -> str:
    answer = httpx.post(url, timeout=10, headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
                        json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                            "protocolVersion": SESSION_VERSION, "capabilities": {}, "clientInfo": {"name": "maestro-bench", "version": "1"}}})
    if answer.status_code != 200:
        raise RuntimeError(f"initialize through the MCP endpoint failed: {answer.status_code} {answer.text[:300]}")
    return answer.headers["mcp-session-id"]


def _check(url: str, body: str, headers: dict) -> None:
    answer = httpx.post(url, content=body, headers={**headers, "Content-Type": "application/json"}, timeout=10)
    if answer.status_code != 200 or "hello" not in answer.text:
        raise RuntimeError(f"tools/call through the MCP endpoint failed: {answer.status_code} {answer.text[:300]}")


def cpu_scenario(ctx: Ctx, concurrency: int = 32) -> dict:
    stack = ctx.stack
    # A run of its own per door: each starts its evidence chain the same way (a chain that two
    # workers already contend for is written under its lock, which costs more database CPU).
    runs = {"invoke": "bench-mcp-invoke", "mcp_2026": "bench-mcp-2026", "mcp_2025": "bench-mcp-2025"}
    token = {name: ctx.token(run_id) for name, run_id in runs.items()}
    mcp_url = {name: stack.url(f"{API}/runs/{run_id}/mcp") for name, run_id in runs.items()}
    variants = {
        "invoke": (stack.url(f"{API}/runs/{runs['invoke']}/mcp/invoke"), invoke_body(), {"Authorization": f"Bearer {token['invoke']}"}),
        "mcp_2026": (mcp_url["mcp_2026"], *_mcp_call(token["mcp_2026"])),
        "mcp_2025": (mcp_url["mcp_2025"], *_mcp_call(token["mcp_2025"], session_id=_initialize(mcp_url["mcp_2025"], token["mcp_2025"]))),
    }
    for name in ("mcp_2026", "mcp_2025"):
        _check(*variants[name])
        ctx.saw(runs[name], 1)
    meter = ctx.cpu_meter()
    points = {}
    for name, (url, body, headers) in variants.items():
        warm = run_wrk(url, body=body, headers=headers, connections=8, duration=ctx.warmup)
        ctx.saw(runs[name], warm["ok"], 8)
        before = meter.snapshot()
        result = run_wrk(url, body=body, headers=headers, connections=concurrency, duration=ctx.duration)
        ctx.saw(runs[name], result["ok"], concurrency)
        points[name] = {**result, "cpu": _per_call(meter.delta(before), result)}
    base = points["invoke"]["cpu"]["ms_per_call"]["gateway_web"]
    ratios = {name: round(p["cpu"]["ms_per_call"]["gateway_web"] / base, 3) if base else None for name, p in points.items()}
    return {"concurrency": concurrency, "points": points, "cpu_ratio": ratios}


def _established(port: int) -> int:
    """TCP connections established to the web door's port (server side), from /proc/net/tcp*."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except OSError:
            continue
    return count


def _memory(pids) -> dict:
    live = pids()
    return {"rss_mb": round(sum(procstat._status_kb(p, "VmRSS") for p in live) / 1024, 1),
            "pss_mb": round(sum(procstat.pss_kb(p) for p in live) / 1024, 1)}


def streams_scenario(ctx: Ctx, streams: int = STREAMS, hold_s: float = 20.0) -> dict:
    stack = ctx.stack
    run_id = "bench-streams"
    token = ctx.token(run_id)
    url = stack.url(f"{API}/runs/{run_id}/mcp")
    port = int(stack.url("").rsplit(":", 1)[1].split("/")[0])
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
                       "params": {"notifications": {"toolsListChanged": True}, "_meta": META}})
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"}
    with httpx.stream("POST", url, content=body, headers={**headers, "Content-Type": "application/json"}, timeout=10) as probe:
        first = next(probe.iter_lines(), "")
        if probe.status_code != 200 or "event" not in first and "data" not in first:
            raise RuntimeError(f"subscriptions/listen failed: {probe.status_code} {first[:200]}")
    idle = _memory(stack.web.pids)
    sampler = procstat.PeakSampler({"gateway_web": stack.web.pids}, interval=0.5)
    counts: list[int] = []
    halt = threading.Event()

    def count_connections() -> None:
        while not halt.wait(1.0):
            counts.append(_established(port))

    counter = threading.Thread(target=count_connections, daemon=True)
    sampler.start()
    counter.start()
    started = time.monotonic()
    # wrk opens every connection, sends the listen request on each and waits: no stream ends
    # before wrk stops (its timeout is longer than the run), so it completes no request.
    result = run_wrk(url, body=body, headers=headers, connections=streams, duration=hold_s, threads=2, timeout_s=hold_s + 30)
    halt.set()
    counter.join(2)
    peaks = sampler.stop()
    return {
        "streams": streams, "held_s": round(time.monotonic() - started, 1), "peak_established": max(counts, default=0),
        "idle": idle, "peak": peaks["gateway_web"], "added_rss_mb": round(peaks["gateway_web"]["rss_mb"] - idle["rss_mb"], 1),
        "wrk": {k: result[k] for k in ("requests", "non2xx", "socket_errors", "socket_error_detail")},
    }

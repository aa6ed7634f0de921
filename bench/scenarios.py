"""The five measurements of issue 7, each against the running Stack. Every function returns a plain
dict for latest.json and records, per run id, how many successful answers the clients saw, so the
evidence table can be checked against them at the end."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field

import httpx

from bench import procstat
from bench.stack import API, PYTHON, ROOT, Stack
from bench.wrk import run_wrk

CONCURRENCIES = (1, 8, 32)
ECHO_ARGS = {"text": "hello"}
MODERN = "2026-07-28"


@dataclass
class Ctx:
    stack: Stack
    duration: float
    warmup: float
    grpc_procs: int
    tokens: dict[str, str] = field(default_factory=dict)
    # run id -> [2xx answers seen, answers that may have completed unseen when wrk stopped]
    answered: dict[str, list[int]] = field(default_factory=dict)

    def token(self, run_id: str) -> str:
        if run_id not in self.tokens:
            self.tokens[run_id] = self.stack.open_session(run_id)
        return self.tokens[run_id]

    def saw(self, run_id: str, ok: int, unseen: int = 0) -> None:
        entry = self.answered.setdefault(run_id, [0, 0])
        entry[0] += ok
        entry[1] += unseen

    def cpu_meter(self) -> procstat.CpuMeter:
        s = self.stack
        return procstat.CpuMeter({
            "gateway_web": s.web.pids,
            "gateway_grpc": lambda: s.grpc.pids() if s.grpc else [],
            "postgresql": s.postgres.pids,
            "redis": lambda: [s.redis.process.pid],
            "upstream": lambda: [s.upstream.process.pid],
        })


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, int(round(pct / 100 * len(sorted_values) + 0.5)) - 1))
    return round(sorted_values[rank], 3)


# --- request shapes ----------------------------------------------------------------------------

def direct_request(tool: str = "echo", arguments: dict | None = None) -> tuple[str, dict]:
    """tools/call exactly as the gateway sends it to a 2026-07-28 server (sessionless; the
    Mcp-Method / Mcp-Name headers must match the body, and params._meta carries the envelope)."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "maestro-bench", "version": "1.0"},
    }
    arguments = ECHO_ARGS if arguments is None else arguments
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments, "_meta": meta}}
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}
    return json.dumps(body), headers


def invoke_body(tool: str = "echo", arguments: dict | None = None) -> str:
    return json.dumps({"server": "bench-upstream", "tool": tool, "arguments": ECHO_ARGS if arguments is None else arguments})


def sanity_checks(ctx: Ctx) -> None:
    """One call each way before measuring: a harness that benchmarks 401s measures nothing."""
    body, headers = direct_request()
    answer = httpx.post(ctx.stack.upstream.url(), content=body, headers={**headers, "Content-Type": "application/json"}, timeout=10)
    if answer.status_code != 200 or "hello" not in answer.text:
        raise RuntimeError(f"direct tools/call failed: {answer.status_code} {answer.text[:300]}")
    answer = httpx.post(ctx.stack.url(f"{API}/runs/bench-http/mcp/invoke"), content=invoke_body(),
                        headers={"Authorization": f"Bearer {ctx.token('bench-http')}", "Content-Type": "application/json"}, timeout=10)
    if answer.status_code != 200:
        raise RuntimeError(f"gateway invoke failed: {answer.status_code} {answer.text[:300]}")
    ctx.saw("bench-http", 1)


# --- 1 + 2: direct vs gateway, and CPU per invocation ------------------------------------------

def http_scenario(ctx: Ctx) -> dict:
    stack = ctx.stack
    direct_url = stack.upstream.url()
    direct_body, direct_headers = direct_request()
    gw_url = stack.url(f"{API}/runs/bench-http/mcp/invoke")
    gw_headers = {"Authorization": f"Bearer {ctx.token('bench-http')}"}
    gw_body = invoke_body()

    # Warm-up: connection pools, per-process caches (server spec, tool list, chain head).
    run_wrk(direct_url, body=direct_body, headers=direct_headers, connections=8, duration=ctx.warmup)
    warm = run_wrk(gw_url, body=gw_body, headers=gw_headers, connections=8, duration=ctx.warmup)
    ctx.saw("bench-http", warm["ok"], 8)

    meter = ctx.cpu_meter()
    rows, cpu = [], {}
    for c in CONCURRENCIES:
        before = meter.snapshot() if c == 32 else None
        direct = run_wrk(direct_url, body=direct_body, headers=direct_headers, connections=c, duration=ctx.duration)
        if before:
            cpu["direct_c32"] = _per_call(meter.delta(before), direct)
        before = meter.snapshot() if c == 32 else None
        stats_before = upstream_stats(stack) if c == 32 else None
        gateway = run_wrk(gw_url, body=gw_body, headers=gw_headers, connections=c, duration=ctx.duration)
        if before:
            cpu["gateway_c32"] = _per_call(meter.delta(before), gateway)
            # How many upstream requests one invocation costs (a repeated handshake would show here).
            after = upstream_stats(stack)
            calls = gateway["requests"] or 1
            cpu["gateway_c32"]["upstream_requests_per_call"] = {
                k: round((after.get(k, 0) - stats_before.get(k, 0)) / calls, 3) for k in after if after.get(k, 0) != stats_before.get(k, 0)}
        ctx.saw("bench-http", gateway["ok"], c)
        rows.append({"concurrency": c, "direct": direct, "gateway": gateway,
                     "throughput_ratio": round(gateway["rps"] / direct["rps"], 3) if direct["rps"] else None,
                     "added_p50_ms": round(gateway["p50_ms"] - direct["p50_ms"], 3)})
    return {"rows": rows, "cpu": cpu}


def upstream_stats(stack: Stack) -> dict[str, int]:
    try:
        return httpx.get(stack.upstream.url("/stats"), timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}


def _per_call(used: dict[str, float], result: dict) -> dict:
    calls = result["requests"] or 1
    used = {**used, "load_client": result["client_cpu_s"]}
    return {
        "calls": result["requests"],
        "wall_s": result["duration_s"],
        "cpu_s": used,
        "ms_per_call": {name: round(seconds * 1000 / calls, 3) for name, seconds in used.items()},
    }


# --- 4: session creation -----------------------------------------------------------------------

def sessions_scenario(ctx: Ctx, concurrencies: tuple[int, ...] = (8, 32)) -> dict:
    stack = ctx.stack
    url = stack.url(f"{API}/runs/bench-sessions/mcp/sessions")
    headers = {"X-API-Key": stack.api_key}
    body = json.dumps(stack.session_body())
    run_wrk(url, body=body, headers=headers, connections=8, duration=ctx.warmup)
    points = []
    meter = ctx.cpu_meter()
    for c in concurrencies:
        rows_before = stack.session_rows()
        before = meter.snapshot()
        result = run_wrk(url, body=body, headers=headers, connections=c, duration=ctx.duration)
        used = meter.delta(before)
        # Persistence check: one mcp_sessions row per 201 (a few more where wrk stopped mid-call).
        points.append({**result, "persisted_rows_added": stack.session_rows() - rows_before,
                       "web_cpu_ms_per_session": round(used["gateway_web"] * 1000 / max(result["ok"], 1), 3)})
    best = max(points, key=lambda p: p["rps"])
    return {"points": points, "sessions_per_s": best["rps"], "best_concurrency": best["connections"]}


# --- 5: gRPC invoke ----------------------------------------------------------------------------

def _grpc_clients(ctx: Ctx, run_id: str, *, procs: int, concurrency: int = 0, burst: int = 0,
                  tool: str = "echo", arguments: dict | None = None, channels: int = 1,
                  duration: float | None = None) -> list[subprocess.Popen]:
    stack = ctx.stack
    common = [PYTHON, "-m", "bench.grpc_load", "--target", f"127.0.0.1:{stack.grpc_port}", "--token", ctx.token(run_id),
              "--run", run_id, "--server", stack.server_name, "--tool", tool,
              "--arguments", json.dumps(ECHO_ARGS if arguments is None else arguments), "--channels", str(channels)]
    clients = []
    for i in range(procs):
        if burst:
            extra = ["--burst", str(burst // procs + (1 if i < burst % procs else 0)), "--warmup", "1"]
        else:
            extra = ["--concurrency", str(concurrency // procs + (1 if i < concurrency % procs else 0)),
                     "--duration", str(duration or ctx.duration)]
        clients.append(subprocess.Popen(common + extra, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return clients


def _collect(clients: list[subprocess.Popen], timeout: float) -> list[dict]:
    results = []
    try:
        for client in clients:
            out, err = client.communicate(timeout=timeout)
            if client.returncode != 0:
                raise RuntimeError(f"gRPC load client failed ({client.returncode}): {err.strip()[-1500:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.wait()
    return results


def _merge(results: list[dict]) -> dict:
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r["codes"].items():
            codes[code] = codes.get(code, 0) + n
    wall = max(r["wall_s"] for r in results)
    ok = sum(r["ok"] for r in results)
    return {
        "ok": ok, "total": sum(r["total"] for r in results), "codes": codes,
        "errors": sum(r["total"] - r["ok"] for r in results),
        "warmup_ok": sum(r.get("warmup_ok", 0) for r in results),
        "wall_s": wall, "rps": round(ok / wall, 1) if wall else 0.0,
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "max_ms": latencies[-1] if latencies else 0.0,
        "client_processes": len(results),
        "client_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
        # A client process near 100% of one core is limiting the rate, not the gateway.
        "client_cpu_per_process": [round(r["cpu_s"] / r["wall_s"], 2) if r["wall_s"] else 0.0 for r in results],
    }


def grpc_scenario(ctx: Ctx, concurrency: int = 32) -> dict:
    meter = ctx.cpu_meter()
    # Warm-up (the gRPC process's caches, the upstream pool), not measured but in the evidence.
    warm = _merge(_collect(_grpc_clients(ctx, "bench-grpc", procs=1, concurrency=8, duration=ctx.warmup, channels=8), ctx.warmup + 60))
    ctx.saw("bench-grpc", warm["ok"] + warm["warmup_ok"])
    before = meter.snapshot()
    # Eight channels (HTTP/2 connections), as several runs calling at once would open: run_grpc's
    # worker processes share the port by connection, so one channel would reach one worker only.
    merged = _merge(_collect(_grpc_clients(ctx, "bench-grpc", procs=ctx.grpc_procs, concurrency=concurrency, channels=8), ctx.duration + 60))
    used = meter.delta(before)
    calls = (merged["ok"] + merged["errors"] + merged["warmup_ok"]) or 1
    used["load_client"] = merged["client_cpu_s"]
    merged["cpu"] = {"calls": calls, "cpu_s": used, "ms_per_call": {k: round(v * 1000 / calls, 3) for k, v in used.items()}}
    merged["concurrency"] = concurrency
    merged["client_bound"] = any(share >= 0.9 for share in merged["client_cpu_per_process"])
    ctx.saw("bench-grpc", merged["ok"] + merged["warmup_ok"])
    return merged


# --- 3: 1,000 slow calls -----------------------------------------------------------------------

def slow_scenario(ctx: Ctx, *, calls: int, sleep_s: float, overlay: dict[str, str]) -> dict:
    stack = ctx.stack
    stack.restart_gateway(overlay)
    body = invoke_body("sleep", {"seconds": sleep_s})
    out: dict = {"calls": calls, "sleep_s": sleep_s, "overlay": overlay,
                 "effective_settings": stack.effective_settings({**stack.env, **overlay})}

    # The same burst straight to the upstream: what the tool itself allows (the floor for p99).
    direct_body, direct_headers = direct_request(tool="sleep", arguments={"seconds": sleep_s})
    direct = _http_burst(stack.upstream.url(), direct_body, direct_headers, calls)
    out["direct"] = _burst_summary(direct, {"rss_mb": 0, "pss_mb": 0, "processes": 0, "threads": 0}, {"processes": 0})

    # HTTP: exactly `calls` requests at once, one connection each (the gRPC client warms its door
    # the same way, with --warmup).
    out["http"] = _http_door_burst(ctx, "bench-slow", body, calls)

    # gRPC: the same burst through the other door (its own in-flight limit applies).
    time.sleep(1.0)
    sampler = procstat.PeakSampler({"gateway_grpc": stack.grpc.pids, "postgresql": stack.postgres.pids})
    sampler.start()
    try:
        results = _collect(_grpc_clients(ctx, "bench-slow-grpc", procs=1, burst=calls, tool="sleep",
                                         arguments={"seconds": sleep_s}, channels=10), 120)
    finally:
        peaks = sampler.stop()
    grpc_merged = _merge(results)
    ctx.saw("bench-slow-grpc", grpc_merged["ok"] + grpc_merged["warmup_ok"])
    out["grpc"] = _burst_summary({**grpc_merged, "total": calls, "latencies_ms": sorted(x for r in results for x in r["latencies_ms"])},
                                 peaks["gateway_grpc"], peaks["postgresql"])
    return out


# --- 6: 10,000 slow calls held open at once through the HTTP door --------------------------------

CROWD_TIMEOUT_S = 120  # the registry's largest timeout_ms, and the burst client's


def crowd_scenario(ctx: Ctx, *, calls: int, sleep_s: float, overlay: dict[str, str]) -> dict:
    """Thousands of callers each holding a connection while their tool runs: what a thread per
    call could not carry. Reports success, latency and the web door's peak memory."""
    stack = ctx.stack
    # Straight to the upstream first: on a small machine its own p50 for such a burst is many times
    # the tool's 2 s (a Python server answering 10,000 at once), past the server's default 10 s
    # timeout. The gateway then waits as long as the client does (the registry's maximum), so the
    # scenario measures the gateway holding the calls, not the upstream's backlog.
    direct_body, direct_headers = direct_request(tool="sleep", arguments={"seconds": sleep_s})
    direct = _http_burst(stack.upstream.url(), direct_body, direct_headers, calls, timeout=CROWD_TIMEOUT_S)
    stack.set_server_timeout(CROWD_TIMEOUT_S * 1000)
    stack.restart_gateway(overlay)
    http = _http_door_burst(ctx, "bench-crowd", invoke_body("sleep", {"seconds": sleep_s}), calls, timeout=CROWD_TIMEOUT_S)
    return {"calls": calls, "sleep_s": sleep_s, "overlay": overlay, "server_timeout_ms": CROWD_TIMEOUT_S * 1000, "http": http,
            "direct": _burst_summary(direct, {"rss_mb": 0, "pss_mb": 0, "processes": 0, "threads": 0}, {"processes": 0})}


def _http_door_burst(ctx: Ctx, run_id: str, body: str, calls: int, timeout: float = 60) -> dict:
    """`calls` invocations at once through the HTTP door, one connection each, after a few calls
    to warm the (restarted) door; the door's and PostgreSQL's peaks sampled meanwhile."""
    stack = ctx.stack
    token = ctx.token(run_id)
    url = stack.url(f"{API}/runs/{run_id}/mcp/invoke")
    warm_body = invoke_body("echo", {"text": "warm"})
    # A new connection per call, so the kernel spreads them over the worker processes.
    warmed = sum(httpx.post(url, content=warm_body, timeout=10, headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}).status_code == 200
                 for _ in range(8))
    ctx.saw(run_id, warmed)
    sampler = procstat.PeakSampler({"gateway_web": stack.web.pids, "postgresql": stack.postgres.pids})
    sampler.start()
    try:
        result = _http_burst(url, body, {"Authorization": f"Bearer {token}"}, calls, timeout=timeout)
    finally:
        peaks = sampler.stop()
    ctx.saw(run_id, result["ok"])
    return _burst_summary(result, peaks["gateway_web"], peaks["postgresql"])


def _http_burst(url: str, body: str, headers: dict[str, str], calls: int, timeout: float = 60) -> dict:
    cmd = [PYTHON, "-m", "bench.http_burst", "--url", url, "--body", body, "-n", str(calls), "--timeout", str(timeout)]
    for name, value in headers.items():
        cmd += ["--header", f"{name}: {value}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"http_burst failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _burst_summary(result: dict, gateway_peak: dict, pg_peak: dict) -> dict:
    latencies = result["latencies_ms"]
    return {
        "total": result["total"], "ok": result["ok"], "codes": result["codes"], "wall_s": result.get("wall_s"),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99), "max_ms": latencies[-1] if latencies else 0.0,
        "gateway_peak": gateway_peak, "postgres_peak_processes": pg_peak["processes"],
        "client_cpu_s": result.get("cpu_s", result.get("client_cpu_s")),
    }

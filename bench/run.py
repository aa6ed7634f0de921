"""`make bench` (`python -m bench.run`): start an upstream, PostgreSQL, Redis and the gateway as
deployed, measure the scenarios of issue 7 side by side, print one table, write
bench/results/latest.json, and stop everything it started.

    python -m bench.run                    # the full run (a few minutes)
    python -m bench.run --quick            # 3 s per point, for iterating
    python -m bench.run --only http,grpc   # some scenarios: http (1+2), sessions (4), grpc (5), slow (3), crowd (6),
                                           # mcp (8: the MCP endpoint's CPU), streams (9: 10,000 idle streams)

Exit status: 0 when the measurement completed (even if a budget fails: it is a measurement), 1 when
the harness itself broke, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import sys
import time

from bench import mcp_endpoint, procstat, report, scenarios
from bench.stack import ROOT, Stack

RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("http", "sessions", "grpc", "mcp", "streams", "slow", "crowd")

# Scenarios 3 and 6 only: the gRPC door's in-flight limit and the per-process upstream pool are
# raised past the burst (documented knobs); a waiting call costs the web door a coroutine, not a
# thread, so nothing else changes. The other scenarios run on the documented defaults.
SLOW_CALLS = 1000
CROWD_CALLS = 10_000
SLOW_SLEEP_S = 2.0
# Headroom for a deployment without the connection pool (DATABASE_POOL_SIZE=0: a connection per
# thread, so 1,000 in-flight calls could hold ~1,000); with the default pool each process holds at
# most DATABASE_POOL_SIZE. Either way the measurement must not be of PostgreSQL refusing.
PG_MAX_CONNECTIONS = 2400


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _raise_fd_limit() -> int:
    # 10,000 client sockets, and the gateway's to the upstream: the usual soft limit of 1,024 is
    # far too low, and children (wrk, the web server, the clients) inherit this one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def burst_overlay(calls: int, overrides: list[str]) -> dict[str, str]:
    # Room for every call at once plus the harness's own; the pool is per worker process, so the
    # setting's ceiling (10,000) still holds 10,000 calls spread over the web door's workers.
    overlay = {"MCP_GRPC_MAX_IN_FLIGHT": str(calls + 100), "MCP_UPSTREAM_MAX_CONNECTIONS": str(min(calls + 100, 10_000))}
    for item in overrides:
        name, _, value = item.partition("=")
        if value:
            overlay[name] = value
        else:
            overlay.pop(name, None)
    return overlay


def scan_logs(stack: Stack) -> dict:
    """What the gateway said while it was measured: warnings with a traceback, errors and 5xx
    answers are for whoever works on the gateway, grouped by kind."""
    kinds: dict[str, int] = {}
    problems, http_5xx = 0, 0
    for log in sorted(stack.logdir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                status = entry.get("status")
                if isinstance(status, int) and status >= 500:
                    http_5xx += 1
                if entry.get("level") not in ("ERROR", "CRITICAL") and "exc" not in entry:
                    continue
                exc = str(entry.get("exc") or "").strip().splitlines()
                kind = f"{log.stem}: {entry.get('level')} {entry.get('logger')}: {str(entry.get('msg'))[:90]}" + (f" | {exc[-1][:140]}" if exc else "")
            elif "Traceback" in line or "[ERROR]" in line or "[CRITICAL]" in line:
                kind = f"{log.stem}: {line[:160]}"
            else:
                continue
            problems += 1
            kinds[kind] = kinds.get(kind, 0) + 1
    top = sorted(kinds.items(), key=lambda kv: -kv[1])[:8]
    return {"problem_lines": problems, "http_5xx": http_5xx, "kinds": [{"count": n, "kind": k} for k, n in top]}


def check_evidence(stack: Stack, ctx: scenarios.Ctx) -> dict:
    counts = stack.evidence_counts()
    runs = {}
    for run_id, (answered, unseen) in ctx.answered.items():
        statuses = counts.get(run_id, {})
        success = statuses.get("success", 0)
        # Every answered 200 must have its row; a few more rows are fine only where wrk stopped
        # with calls in flight (answered by the gateway, never read by wrk).
        ok = answered <= success <= answered + unseen
        runs[run_id] = {"rows": sum(statuses.values()), "success": success, "by_status": statuses,
                        "answered": answered, "unseen": unseen, "result": "OK" if ok else "MISMATCH"}
    return {"runs": runs, "all_ok": all(r["result"] == "OK" for r in runs.values())}


def measure(args, stack: Stack, results: dict) -> None:
    stack.start_dependencies()
    stack.env = stack.base_env()
    stack.migrate_and_key()
    commands = stack.start_gateway()
    results["gateway"] = {
        "procfile": {"web": commands["web"], "grpc": commands["grpc"]},
        "env": {k: v for k, v in stack.env.items() if k in (
            "MCP_SESSIONS_PERSIST", "MCP_SESSION_MAX_IN_FLIGHT", "DJANGO_DOTENV_FILE", "WEB_CONCURRENCY",
            "MAESTRO_HTTP_THREADS", "MAESTRO_HTTP_MAX_CONCURRENCY", "MCP_GRPC_MAX_IN_FLIGHT")},
        "effective_settings": stack.effective_settings(stack.env),
        "postgres_max_connections": PG_MAX_CONNECTIONS,
        "web_processes": len(stack.web.pids()),
    }
    stack.register_upstream()
    ctx = scenarios.Ctx(stack=stack, duration=args.duration, warmup=args.warmup, grpc_procs=args.grpc_procs)
    scenarios.sanity_checks(ctx)

    steps = [
        ("http", "1+2 direct vs gateway, CPU per call", lambda: scenarios.http_scenario(ctx)),
        ("sessions", "4 session creation", lambda: scenarios.sessions_scenario(ctx)),
        ("grpc", "5 gRPC invoke", lambda: scenarios.grpc_scenario(ctx)),
        ("mcp", "8 MCP endpoint vs invoke, CPU per call", lambda: mcp_endpoint.cpu_scenario(ctx)),
        ("streams", "9 10,000 idle MCP streams", lambda: mcp_endpoint.streams_scenario(ctx, streams=args.streams)),
        # Last: they restart the gateway with the burst knobs.
        ("slow", "3 1000 slow calls", lambda: scenarios.slow_scenario(ctx, calls=args.slow_calls, sleep_s=SLOW_SLEEP_S,
                                                                  overlay=burst_overlay(args.slow_calls, args.slow_env))),
        ("crowd", "6 10000 slow calls held open", lambda: scenarios.crowd_scenario(ctx, calls=args.crowd_calls, sleep_s=SLOW_SLEEP_S,
                                                                                  overlay=burst_overlay(args.crowd_calls, args.slow_env))),
    ]
    if args.compare_ref:
        from bench.reference import compare_scenario

        # Before the burst scenarios: they restart the gateway with other settings.
        steps.insert(1, ("compare", f"7 this gateway vs {args.compare_ref}",
                         lambda: compare_scenario(ctx, ref=args.compare_ref, body=scenarios.invoke_body())))
        args.only.append("compare")
    for name, label, step in steps:
        if name not in args.only:
            continue
        print(f"bench: {label} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        results[name] = step()
        print(f"bench:   done in {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    results["evidence"] = check_evidence(stack, ctx)
    results["gateway_log"] = scan_logs(stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s per point, 1 s warm-up")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, help="seconds per measured point (default 10, --quick 3)")
    parser.add_argument("--grpc-procs", type=int, default=1, help="gRPC load client processes (default 1)")
    parser.add_argument("--slow-calls", type=int, default=SLOW_CALLS)
    parser.add_argument("--crowd-calls", type=int, default=CROWD_CALLS)
    parser.add_argument("--compare-ref", default="", metavar="REV",
                        help="also measure this git revision's gateway (e.g. 7ea0146, the threaded stage 1) in the same run")
    parser.add_argument("--streams", type=int, default=mcp_endpoint.STREAMS, help="idle MCP streams held in scenario 9")
    parser.add_argument("--slow-env", action="append", default=[], metavar="NAME=VALUE",
                        help="replace the slow-call scenario's settings (repeatable; NAME= drops one)")
    parser.add_argument("--output", default=str(RESULTS / "latest.json"))
    parser.add_argument("--keep-logs", action="store_true", help="keep the gateway logs folder")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for the 1-minute load average to drop below 0.5")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    for item in args.slow_env:
        if "=" not in item:
            parser.error(f"--slow-env {item!r}: expected NAME=VALUE")
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = 1.0 if args.quick else 2.0
    if not shutil.which("wrk"):
        print("bench: wrk is not installed (apt-get install wrk, or `make bench`)", file=sys.stderr)
        return 1

    # Explicitly: a shell without job control starts background jobs with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    fd_limit = _raise_fd_limit()
    if args.wait_quiet:
        procstat.wait_quiet(0.5, args.wait_quiet)
    results: dict = {
        "command": "make bench" if not argv and len(sys.argv) == 1 else "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": procstat.machine_info(),
        "durations": {"measure_s": args.duration, "warmup_s": args.warmup},
        "fd_limit": fd_limit,
        "scenarios_run": args.only,
    }
    if results["machine"]["load_average_at_start"][0] > 0.5:
        print(f"bench: note: load average {results['machine']['load_average_at_start'][0]} at start: numbers may be noisy", file=sys.stderr)

    stack = Stack(pg_max_connections=PG_MAX_CONNECTIONS)
    status = stack.run(lambda: measure(args, stack, results))

    if status == 0:
        results["budget"] = report.budget(results)
        stack.publish(report.render(results), results, args.output)
    stack.tidy_logs(status, keep=args.keep_logs, label="bench")
    return status


if __name__ == "__main__":
    sys.exit(main())

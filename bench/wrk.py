"""Run wrk with bench/post.lua and turn its JSON line into one result dict."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "post.lua"


class WrkError(RuntimeError):
    pass


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, *, body: str, headers: dict[str, str], connections: int, duration: float,
            threads: int | None = None, timeout_s: float = 10.0) -> dict:
    threads = threads or min(2, connections)
    env = dict(os.environ)
    env["BENCH_BODY"] = body
    env["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in headers.items())
    seconds = max(1, round(duration))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s:g}s", "--latency", "-s", str(SCRIPT), url]
    cpu_before = _children_cpu()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
    client_cpu = _children_cpu() - cpu_before
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise WrkError(f"wrk failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]} {proc.stdout.strip()[-1500:]}")
    raw = json.loads(line[len("BENCH_JSON "):])
    return summarize(raw, connections=connections, threads=threads, client_cpu=client_cpu)


def summarize(raw: dict, *, connections: int, threads: int, client_cpu: float) -> dict:
    codes = {int(k): v for k, v in raw["codes"].items()}
    ok = sum(n for code, n in codes.items() if 200 <= code < 300)
    non2xx = sum(n for code, n in codes.items() if not 200 <= code < 300)
    errors = raw["errors"]
    # wrk's "status" error is a non-2xx we already count; the rest are socket-level failures.
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    return {
        "connections": connections,
        "threads": threads,
        "duration_s": round(seconds, 2),
        "requests": raw["requests"],
        "ok": ok,
        "rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": round(lat["p50"] / 1000, 3),
        "p90_ms": round(lat["p90"] / 1000, 3),
        "p99_ms": round(lat["p99"] / 1000, 3),
        "max_ms": round(lat["max"] / 1000, 3),
        "mean_ms": round(lat["mean"] / 1000, 3),
        "non2xx": non2xx,
        "socket_errors": socket_errors,
        "errors": non2xx + socket_errors,
        "codes": {str(k): v for k, v in sorted(codes.items())},
        "socket_error_detail": {k: errors[k] for k in ("connect", "read", "write", "timeout")},
        "client_cpu_s": round(client_cpu, 3),
    }

"""`make soak` (`python -m bench.soak --minutes 10`): the gateway as deployed under mixed traffic
for a bounded time, with its dependencies failing on a schedule, then four verdicts.

    python -m bench.soak                      # 10 minutes, faults at 25%, 50% and 75% of the run
    python -m bench.soak --minutes 1          # the same, shorter
    python -m bench.soak --minutes 0.3 --no-faults

It starts what `make bench` starts (bench/stack.py: durable PostgreSQL, Redis, an SDK upstream, the
`web` and `grpc` lines of the Procfile with sessions persisted) and sends, at `--rate` operations
a second: tool calls through HTTP and gRPC on several runs, calls the server's deny list refuses,
tool-list reads, and sessions opened, used, revoked and checked refused. Meanwhile the upstream is
killed and started again, then Redis, then PostgreSQL, each down for `--outage-seconds`.

Verdicts: no 5xx (HTTP) and no UNAVAILABLE/INTERNAL/UNKNOWN/DEADLINE_EXCEEDED (gRPC) in the
gateway's access logs outside the outage windows (a request counts as inside when its lifetime
overlaps [outage start, outage end + RECOVERY_S]); memory flat (the web and gRPC doors' RSS after
the warm-up against the end); evidence complete (per run, rows with status success at least the
successes the clients saw, denied rows at least the denials, and `manage.py mcp_evidence verify`
passes); no gateway process restarted, and no revoked token accepted. Prints a short report and
writes bench/results/soak.json. Exit status 0 when every verdict passes, 2 when one fails, 1 when
the harness itself broke, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from bench import procstat
from bench.run import _raise_fd_limit, _raise_interrupt
from bench.stack import API, PYTHON, ROOT, Stack

RESULTS = ROOT / "bench" / "results"
RUNS = ("soak-1", "soak-2", "soak-3", "soak-4")
SESSION_RUN = "soak-sessions"
DENIED_TOOL = "boom"  # on the server's deny list: 403 tool_denied, a denied row
RECOVERY_S = 2.0  # after an outage ends, how long its failures may still show (reconnects take < 1 s)
GROWTH_MB, GROWTH_SHARE = 16.0, 0.10  # "flat": the end within this of the start (whichever is larger)
GRPC_SERVER_FAILURES = {"UNAVAILABLE", "INTERNAL", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS"}
FAULTS = (("upstream", 0.25), ("redis", 0.50), ("postgres", 0.75))
WEIGHTS = (("http", 50), ("grpc", 25), ("tools", 8), ("denied", 7), ("session", 5))


@dataclass
class Outage:
    kind: str
    start: float  # wall clock (time.time())
    end: float = 0.0

    def covers(self, start: float, end: float) -> bool:
        return start <= self.end + RECOVERY_S and end >= self.start


@dataclass
class Tally:
    """What the clients saw."""

    answers: Counter = field(default_factory=Counter)  # (door, action, status, code)
    ok: Counter = field(default_factory=Counter)  # run -> successful invocations answered
    denied: Counter = field(default_factory=Counter)  # run -> denials answered
    unknown: Counter = field(default_factory=Counter)  # run -> calls whose answer never arrived
    unrecorded: Counter = field(default_factory=Counter)  # run -> 503 evidence_unavailable
    revoked_accepted: int = 0

    def saw(self, door: str, action: str, run: str, status: str, code: str = "") -> None:
        self.answers[(door, action, status, code)] += 1
        if action == "invoke" and status in ("200", "OK"):
            self.ok[run] += 1
        elif action in ("invoke", "denied") and status in ("403", "PERMISSION_DENIED"):
            self.denied[run] += 1
        elif status == "transport":
            self.unknown[run] += 1
        if code == "evidence_unavailable":
            self.unrecorded[run] += 1


# --- traffic --------------------------------------------------------------------------------------


class Traffic:
    def __init__(self, stack: Stack, rate: float, tokens: dict[str, str], tally: Tally):
        from grpc import aio

        from mcp.grpc import gateway_pb2, gateway_pb2_grpc

        self.stack, self.rate, self.tokens, self.tally = stack, rate, tokens, tally
        self.client = httpx.AsyncClient(base_url=stack.url(""), timeout=30, limits=httpx.Limits(max_connections=64))
        self.pb = gateway_pb2
        # Two channels (HTTP/2 connections): run_grpc's workers share the port by connection.
        options = [("grpc.use_local_subchannel_pool", 1)]
        self.channels = [aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}", options=options) for _ in range(2)]
        self.stubs = [gateway_pb2_grpc.McpGatewayStub(ch) for ch in self.channels]
        self.random = random.Random(7)

    async def run(self, until: float, workers: int = 16) -> None:
        interval, next_at = 1.0 / self.rate, time.monotonic()

        async def worker() -> None:
            nonlocal next_at
            while True:
                at, next_at = next_at, max(next_at + interval, time.monotonic() - 1.0)
                if at >= until:
                    return
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                action = self.random.choices([a for a, _ in WEIGHTS], [w for _, w in WEIGHTS])[0]
                await getattr(self, f"do_{action}")(self.random.choice(RUNS))

        await asyncio.gather(*[worker() for _ in range(workers)])

    async def close(self) -> None:
        await self.client.aclose()
        for channel in self.channels:
            await channel.close()

    async def _post_invoke(self, run: str, token: str, tool: str = "echo", arguments: dict | None = None) -> tuple[str, str]:
        body = {"server": self.stack.server_name, "tool": tool, "arguments": {"text": "soak"} if arguments is None else arguments}
        try:
            answer = await self.client.post(f"{API}/runs/{run}/mcp/invoke", json=body, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            return "transport", ""
        return str(answer.status_code), _code(answer)

    async def do_http(self, run: str) -> None:
        self.tally.saw("http", "invoke", run, *await self._post_invoke(run, self.tokens[run]))

    async def do_denied(self, run: str) -> None:
        self.tally.saw("http", "denied", run, *await self._post_invoke(run, self.tokens[run], tool=DENIED_TOOL, arguments={}))

    async def do_grpc(self, run: str) -> None:
        from grpc import aio

        request = self.pb.InvokeRequest(run_id=run, server=self.stack.server_name, tool="echo")
        request.arguments.update({"text": "soak"})
        stub = self.random.choice(self.stubs)
        try:
            await stub.Invoke(request, metadata=(("authorization", f"Bearer {self.tokens[run]}"),), timeout=30)
            status, code = "OK", ""
        except aio.AioRpcError as err:
            trailing = dict(err.trailing_metadata() or ())
            status, code = err.code().name, str(trailing.get("x-ig-error-code", ""))
            if err.code().name == "DEADLINE_EXCEEDED" and not code:
                status = "transport"  # the client's own deadline: the outcome is unknown
        self.tally.saw("grpc", "invoke", run, status, code)

    async def do_tools(self, run: str) -> None:
        try:
            answer = await self.client.get(f"{API}/runs/{run}/mcp/tools", headers={"Authorization": f"Bearer {self.tokens[run]}"})
            self.tally.saw("http", "tools", run, str(answer.status_code), _code(answer))
        except httpx.HTTPError:
            self.tally.saw("http", "tools", run, "transport")

    async def do_session(self, _run: str) -> None:
        """Open a session, call once with it, revoke it, and check that its token is refused once
        the documented bound (0.75 s) has passed."""
        key = {"X-API-Key": self.stack.api_key}
        try:
            opened = await self.client.post(f"{API}/runs/{SESSION_RUN}/mcp/sessions", json=self.stack.session_body(), headers=key)
            self.tally.saw("http", "session-open", SESSION_RUN, str(opened.status_code), _code(opened))
            if opened.status_code != 201:
                return
            session = opened.json()
            self.tally.saw("http", "invoke", SESSION_RUN, *await self._post_invoke(SESSION_RUN, session["token"]))
            revoked = await self.client.delete(f"{API}/runs/{SESSION_RUN}/mcp/sessions/{session['sid']}", headers=key)
            self.tally.saw("http", "session-revoke", SESSION_RUN, str(revoked.status_code), _code(revoked))
            if revoked.status_code != 204:
                return
            await asyncio.sleep(1.0)
            status, code = await self._post_invoke(SESSION_RUN, session["token"])
            self.tally.saw("http", "revoked-use", SESSION_RUN, status, code)
            if status == "200":
                self.tally.revoked_accepted += 1
        except httpx.HTTPError:
            self.tally.saw("http", "session", SESSION_RUN, "transport")


def _code(answer: httpx.Response) -> str:
    if answer.status_code < 400:
        return ""
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


# --- faults ---------------------------------------------------------------------------------------


def inject(stack: Stack, kind: str, outage_s: float, outages: list[Outage]) -> None:
    """Take one dependency down for `outage_s`, then bring it back (blocking: run in a thread)."""
    outage = Outage(kind, time.time())
    outages.append(outage)
    if kind == "upstream":
        killed = stack.upstream
        killed.process.kill()
        killed.process.wait()
        time.sleep(outage_s)
        stack.start_upstream(port=killed.port)
        shutil.rmtree(killed.log.parent, ignore_errors=True)
    elif kind == "redis":
        stack.redis.stop()
        time.sleep(outage_s)
        stack.redis.start()
    elif kind == "postgres":
        stack.postgres.stop()
        time.sleep(outage_s)
        stack.postgres.restart()
    outage.end = time.time()
    print(f"soak: {kind} down for {outage.end - outage.start:.1f} s, back", file=sys.stderr, flush=True)


# --- verdicts -------------------------------------------------------------------------------------


def server_failures(lines: list[str]) -> list[dict]:
    """Access-log lines of answers that are the server's failure (HTTP 5xx; gRPC UNAVAILABLE and
    the like), each with its lifetime in wall-clock seconds."""
    failures = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or "ts" not in entry or "duration_ms" not in entry:
            continue
        status, code = entry.get("status"), entry.get("grpc_code")
        if not ((isinstance(status, int) and status >= 500) or code in GRPC_SERVER_FAILURES):
            continue
        end = datetime.fromisoformat(entry["ts"]).timestamp()
        failures.append({"start": end - float(entry["duration_ms"]) / 1000, "end": end,
                         "what": f"{entry.get('method', 'gRPC')} {entry.get('path') or entry.get('rpc')} {status or code}"})
    return failures


def outside_outages(failures: list[dict], outages: list[Outage]) -> list[dict]:
    return [f for f in failures if not any(o.covers(f["start"], f["end"]) for o in outages)]


def memory_verdict(start: dict[str, float], end: dict[str, float]) -> dict:
    doors = {}
    for door in start:
        growth = end[door] - start[door]
        doors[door] = {"start_mb": start[door], "end_mb": end[door], "growth_mb": round(growth, 1),
                       "flat": growth <= max(GROWTH_MB, GROWTH_SHARE * start[door])}
    return {"doors": doors, "flat": all(d["flat"] for d in doors.values())}


def evidence_verdict(stack: Stack, tally: Tally) -> dict:
    counts = stack.evidence_counts()
    runs = {}
    for run in (*RUNS, SESSION_RUN):
        rows = counts.get(run, {})
        verify = subprocess.run([PYTHON, "manage.py", "mcp_evidence", "verify", run], cwd=ROOT, env=stack.env,
                                capture_output=True, text=True, timeout=300)
        success, denied = rows.get("success", 0), rows.get("denied", 0)
        runs[run] = {
            "rows": rows, "ok_seen": tally.ok[run], "denied_seen": tally.denied[run],
            # A success row without a success seen: an answer lost in transit, or one withheld
            # because its commit was not confirmed (503 evidence_unavailable) although it happened.
            "success_unseen_max": tally.unknown[run] + tally.unrecorded[run],
            "chain": (verify.stdout.strip() or verify.stderr.strip()).splitlines()[-1:] or [""],
            "complete": success >= tally.ok[run] and denied >= tally.denied[run] and verify.returncode == 0,
        }
    return {"runs": runs, "complete": all(r["complete"] for r in runs.values())}


# --- the run --------------------------------------------------------------------------------------


def door_rss(stack: Stack) -> dict[str, float]:
    return {"web": procstat.rss_mb(stack.web.pids()), "grpc": procstat.rss_mb(stack.grpc.pids())}


def door_pids(stack: Stack) -> set[int]:
    return set(stack.web.pids()) | set(stack.grpc.pids())


async def soak(args, stack: Stack, results: dict) -> None:
    stack.start_dependencies()
    stack.env = stack.base_env()
    stack.migrate_and_key()
    stack.start_gateway()
    stack.register_upstream()
    denied = httpx.patch(stack.url(f"{API}/mcp/servers/{stack.server_name}"), json={"tool_deny": [DENIED_TOOL]},
                         headers={"X-API-Key": stack.api_key}, timeout=30)
    if denied.status_code != 200:
        raise RuntimeError(f"setting the deny list: {denied.status_code} {denied.text[:300]}")
    tokens = {run: stack.open_session(run) for run in RUNS}
    tally, outages = Tally(), []
    traffic = Traffic(stack, args.rate, tokens, tally)
    total_s = args.minutes * 60
    started = time.monotonic()
    until = started + total_s
    samples: list[dict] = []
    threads: list[threading.Thread] = []

    async def schedule() -> None:
        marks = [] if args.no_faults else [(share * total_s, kind) for kind, share in FAULTS]
        warm_at = min(0.1 * total_s, 60.0)
        pending = sorted([(warm_at, "warm"), *marks])
        while time.monotonic() < until:
            elapsed = time.monotonic() - started
            samples.append({"t_s": round(elapsed, 1), **door_rss(stack)})
            while pending and pending[0][0] <= elapsed:
                _, what = pending.pop(0)
                if what == "warm":
                    results["memory_start"], results["pids_start"] = door_rss(stack), sorted(door_pids(stack))
                else:
                    thread = threading.Thread(target=inject, args=(stack, what, args.outage_seconds, outages), daemon=True)
                    thread.start()
                    threads.append(thread)
            await asyncio.sleep(min(5.0, max(0.2, until - time.monotonic())))

    try:
        await asyncio.gather(traffic.run(until), schedule())
    finally:
        await traffic.close()
    for thread in threads:  # a fault still under way when the traffic ended
        await asyncio.to_thread(thread.join)
    results["memory_end"], results["pids_end"] = door_rss(stack), sorted(door_pids(stack))
    results["memory"] = memory_verdict(results.get("memory_start") or {k: samples[0][k] for k in ("web", "grpc")}, results["memory_end"])
    results["memory"]["samples"] = samples
    results["outages"] = [{"kind": o.kind, "start": o.start, "end": o.end, "down_s": round(o.end - o.start, 1)} for o in outages]
    results["traffic"] = {"operations": sum(tally.answers.values()), "seconds": round(time.monotonic() - started, 1),
                          "answers": [{"door": d, "action": a, "status": s, "code": c, "count": n}
                                      for (d, a, s, c), n in sorted(tally.answers.items())]}
    lines = [line for log in sorted(stack.logdir.glob("*.log")) for line in log.read_text(errors="replace").splitlines()]
    failures = server_failures(lines)
    outside = outside_outages(failures, outages)
    results["server_failures"] = {"total": len(failures), "outside_outages": len(outside), "examples_outside": outside[:10],
                                  "inside_by_kind": Counter(f["what"] for f in failures if f not in outside).most_common(8)}
    results["evidence"] = evidence_verdict(stack, tally)
    results["revoked_tokens_accepted"] = tally.revoked_accepted
    results["gateway_restarted"] = results.get("pids_start") is not None and results["pids_start"] != results["pids_end"]
    results["verdicts"] = {
        "no_5xx_outside_outages": not outside,
        "memory_flat": results["memory"]["flat"],
        "evidence_complete": results["evidence"]["complete"],
        "no_restart_and_revocations_hold": not results["gateway_restarted"] and not tally.revoked_accepted,
    }


def render(results: dict) -> str:
    traffic, memory, failures = results["traffic"], results["memory"]["doors"], results["server_failures"]
    by_action = Counter()
    for a in traffic["answers"]:
        by_action[f"{a['door']} {a['action']}"] += a["count"]
    verdict = {True: "PASS", False: "FAIL"}
    lines = [
        f"Maestro MCP soak - {results['command']} - {results['machine']['date']}",
        f"machine: {results['machine']['cpu_model']}, {results['machine']['cores']} cores; load average at start "
        f"{results['machine']['load_average_at_start'][0]}",
        f"traffic: {traffic['operations']} operations in {traffic['seconds']:.0f} s (" + ", ".join(f"{k} {n}" for k, n in by_action.most_common()) + ")",
        "faults: " + (", ".join(f"{o['kind']} down {o['down_s']} s" for o in results["outages"]) or "none"),
        f"5xx outside outages: {failures['outside_outages']} (inside: {failures['total'] - failures['outside_outages']})"
        f"  {verdict[results['verdicts']['no_5xx_outside_outages']]}",
        "memory RSS: " + ", ".join(f"{door} {m['start_mb']} -> {m['end_mb']} MB ({m['growth_mb']:+.1f})" for door, m in memory.items())
        + f"  {verdict[results['verdicts']['memory_flat']]}",
        "evidence: " + ", ".join(f"{run} {r['rows'].get('success', 0)} ok rows / {r['ok_seen']} seen" for run, r in results["evidence"]["runs"].items())
        + f"; chains verify  {verdict[results['verdicts']['evidence_complete']]}",
        f"gateway processes restarted: {'yes' if results['gateway_restarted'] else 'no'}; revoked tokens accepted: "
        f"{results['revoked_tokens_accepted']}  {verdict[results['verdicts']['no_restart_and_revocations_hold']]}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the traffic runs (default 10)")
    parser.add_argument("--rate", type=float, default=100.0, help="operations per second (default 100)")
    parser.add_argument("--outage-seconds", type=float, default=5.0, help="how long each injected fault lasts (default 5)")
    parser.add_argument("--no-faults", action="store_true", help="traffic only")
    parser.add_argument("--output", default=str(RESULTS / "soak.json"))
    parser.add_argument("--keep-logs", action="store_true", help="keep the gateway logs folder")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.outage_seconds <= 0:
        parser.error("--minutes, --rate and --outage-seconds must be positive")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    _raise_fd_limit()
    shown = argv if argv is not None else sys.argv[1:]
    results: dict = {"command": "python -m bench.soak " + " ".join(shown), "machine": procstat.machine_info(),
                     "settings": {"minutes": args.minutes, "rate": args.rate, "outage_s": args.outage_seconds, "faults": not args.no_faults}}
    stack = Stack(pg_max_connections=400)
    status = stack.run(lambda: asyncio.run(soak(args, stack, results)), label="soak")
    if status == 0:
        stack.publish(render(results), results, args.output)
        status = 0 if all(results["verdicts"].values()) else 2
    stack.tidy_logs(status, keep=args.keep_logs, label="soak")
    return status


if __name__ == "__main__":
    sys.exit(main())

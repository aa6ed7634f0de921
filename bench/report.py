"""The printed table and the budget check (issue 10's targets), from the results dict that run.py builds."""

from __future__ import annotations


def _n(value, fmt: str = "{:.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def budget(results: dict) -> list[dict]:
    """One row per target of issue 7: measured value and PASS/FAIL (n/a when not measured)."""
    rows = []

    def add(target: str, measured, ok: bool | None, shown: str) -> None:
        rows.append({"target": target, "measured": measured, "shown": shown,
                     "result": "n/a" if ok is None else ("PASS" if ok else "FAIL")})

    http = results.get("http")
    c32 = next((r for r in http["rows"] if r["concurrency"] == 32), None) if http else None
    c1 = next((r for r in http["rows"] if r["concurrency"] == 1), None) if http else None
    ratio = c32["throughput_ratio"] if c32 else None
    add("gateway throughput >= 0.6x direct at c32", ratio, None if ratio is None else ratio >= 0.6, _n(ratio, "{:.2f}x"))
    added = c1["added_p50_ms"] if c1 else None
    add("added median latency at c1 <= 1.0 ms", added, None if added is None else added <= 1.0, _n(added, "{:.2f} ms"))
    cpu = http["cpu"]["gateway_c32"]["ms_per_call"]["gateway_web"] if http else None
    add("gateway CPU <= 0.5 ms per invocation (HTTP, c32)", cpu, None if cpu is None else cpu <= 0.5, _n(cpu, "{:.2f} ms"))

    slow = results.get("slow", {}).get("http")
    if slow:
        add("1000 concurrent slow calls all succeed", slow["ok"], slow["ok"] == slow["total"], f"{slow['ok']}/{slow['total']}")
        add("slow calls p99 <= 2.5 s", slow["p99_ms"], slow["p99_ms"] <= 2500, f"{slow['p99_ms'] / 1000:.2f} s")
        rss = slow["gateway_peak"]["rss_mb"]
        add("gateway memory <= 256 MB during the 1000 slow calls (peak RSS sum)", rss, rss <= 256,
            f"{rss:.0f} MB (PSS {slow['gateway_peak']['pss_mb']:.0f})")
    else:
        for target in ("1000 concurrent slow calls all succeed", "slow calls p99 <= 2.5 s", "gateway memory <= 256 MB during the 1000 slow calls (peak RSS sum)"):
            add(target, None, None, "n/a")

    crowd = results.get("crowd", {}).get("http")
    if crowd:
        add("10000 concurrent slow calls held open all succeed", crowd["ok"], crowd["ok"] == crowd["total"], f"{crowd['ok']}/{crowd['total']}")
        rss = crowd["gateway_peak"]["rss_mb"]
        add("gateway memory <= 1 GB during the 10000 calls (peak RSS sum)", rss, rss <= 1024,
            f"{rss:.0f} MB (PSS {crowd['gateway_peak']['pss_mb']:.0f})")
    else:
        for target in ("10000 concurrent slow calls held open all succeed", "gateway memory <= 1 GB during the 10000 calls (peak RSS sum)"):
            add(target, None, None, "n/a")

    sessions = results.get("sessions")
    rate = sessions["sessions_per_s"] if sessions else None
    add(">= 2000 session creations/s (persistence on)", rate, None if rate is None else rate >= 2000, _n(rate, "{:.0f}/s"))

    grpc = results.get("grpc")
    grpc_rps = grpc["rps"] if grpc else None
    http_rps = c32["gateway"]["rps"] if c32 else None
    both = grpc_rps is not None and http_rps is not None
    add("gRPC invoke throughput >= HTTP invoke throughput (c32)", grpc_rps, grpc_rps >= http_rps if both else None,
        f"{_n(grpc_rps, '{:.0f}/s')} vs {_n(http_rps, '{:.0f}/s')}" + (" (client-bound)" if grpc and grpc["client_bound"] else ""))
    evidence = results.get("evidence")
    if evidence:
        add("evidence rows equal the 200s the clients saw, every scenario", evidence["all_ok"], evidence["all_ok"],
            "all runs OK" if evidence["all_ok"] else "MISMATCH")
    mcp = results.get("mcp")
    ratio = mcp["cpu_ratio"]["mcp_2026"] if mcp else None
    add("MCP endpoint tools/call CPU <= 1.2x invoke's (2026-07-28, c32)", ratio, None if ratio is None else ratio <= 1.2,
        _n(ratio, "{:.2f}x") + (f" (2025-11-25 {mcp['cpu_ratio']['mcp_2025']:.2f}x)" if mcp else ""))
    streams = results.get("streams")
    held = streams["peak_established"] if streams else None
    ok = streams is not None and held >= streams["streams"] and streams["peak"]["rss_mb"] <= 1024
    add("10,000 idle MCP streams within 1 GB (peak RSS sum)", held, None if streams is None else ok,
        f"{held} open, {streams['peak']['rss_mb']:.0f} MB" if streams else "n/a")
    return rows


def render(results: dict) -> str:
    m = results["machine"]
    g = results["gateway"]
    eff = g.get("effective_settings", {})
    lines = [
        f"Maestro MCP benchmark - `{results['command']}` - {m['date']}",
        f"machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {m['os']}, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['wrk']}; load average at start {m['load_average_at_start'][0]}",
        f"gateway: web `{g['procfile']['web']}` ({eff.get('HTTP_WORKERS')} workers, an event loop each; Django on {eff.get('HTTP_THREADS')} threads), "
        f"grpc `{g['procfile']['grpc']}` (MCP_GRPC_MAX_IN_FLIGHT {eff.get('MCP_GRPC_MAX_IN_FLIGHT')}); "
        f"PostgreSQL + Redis, MCP_SESSIONS_PERSIST=true, access log {'on' if eff.get('LOG_REQUESTS') else 'off'}",
        f"durations: {results['durations']['measure_s']} s per point, {results['durations']['warmup_s']} s warm-up",
        "",
    ]
    http = results.get("http")
    if http:
        lines += ["1. tools/call echo: direct to the upstream vs through the gateway (HTTP invoke), wrk",
                  "   conc |  direct req/s   p50 ms   p99 ms  err |  gateway req/s   p50 ms   p99 ms  err |  ratio  +p50 ms",
                  "   -----+------------------------------------+-------------------------------------+----------------"]
        for r in http["rows"]:
            d, w = r["direct"], r["gateway"]
            lines.append(f"   {r['concurrency']:>4} | {d['rps']:>13.0f} {d['p50_ms']:>8.2f} {d['p99_ms']:>8.2f} {d['errors']:>4} |"
                         f" {w['rps']:>14.0f} {w['p50_ms']:>8.2f} {w['p99_ms']:>8.2f} {w['errors']:>4} |"
                         f" {r['throughput_ratio']:>5.2f}x {r['added_p50_ms']:>7.2f}")
        lines.append("")
        cpu = http["cpu"]["gateway_c32"]
        direct_cpu = http["cpu"].get("direct_c32")
        lines.append(f"2. CPU time per invocation, over the gateway c32 run ({cpu['calls']} calls in {cpu['wall_s']} s)")
        lines.append("   process          |  gateway run: cpu s  ms/call |  direct run: ms/call")
        for name in ("gateway_web", "postgresql", "redis", "upstream", "load_client"):
            d = direct_cpu["ms_per_call"].get(name) if direct_cpu else None
            lines.append(f"   {name:<16} | {cpu['cpu_s'][name]:>17.2f} {cpu['ms_per_call'][name]:>8.3f} | {_n(d, '{:>19.3f}')}")
        per_call = cpu.get("upstream_requests_per_call")
        if per_call:
            lines.append("   upstream requests per invocation: " + ", ".join(f"{k} {v}" for k, v in per_call.items()))
        lines.append("")
    slow = results.get("slow")
    if slow:
        lines.append(f"3. {slow['calls']} concurrent calls to `sleep` ({slow['sleep_s']} s), gateway restarted with "
                     + ", ".join(f"{k}={v}" for k, v in slow["overlay"].items()))
        lines.append("   door |   ok/total |  p50 s  p99 s  max s | peak gateway RSS / PSS MB  processes threads | peak PG processes")
        for door in ("direct", "http", "grpc"):
            s = slow.get(door)
            if not s:
                continue
            peak = s["gateway_peak"]
            if door == "direct":
                lines.append(f"   {'up':<4} | {s['ok']:>5}/{s['total']:<5}| {s['p50_ms'] / 1000:>6.2f} {s['p99_ms'] / 1000:>6.2f} {s['max_ms'] / 1000:>6.2f} |"
                             "   (straight to the upstream, for reference)")
                continue
            lines.append(f"   {door:<4} | {s['ok']:>5}/{s['total']:<5}| {s['p50_ms'] / 1000:>6.2f} {s['p99_ms'] / 1000:>6.2f} {s['max_ms'] / 1000:>6.2f} |"
                         f" {peak['rss_mb']:>12.0f} / {peak['pss_mb']:<8.0f} {peak['processes']:>9} {peak['threads']:>7} | {s['postgres_peak_processes']:>17}")
            bad = {k: v for k, v in s["codes"].items() if k not in ("200", "OK")}
            if bad:
                lines.append(f"          failures: {bad}")
        lines.append("")
    compare = results.get("compare")
    if compare:
        lines.append(f"7. the same invoke, this gateway vs {compare['ref']}, one after the other in this run, wrk")
        lines.append("   conc |      this: req/s   p50 ms   p99 ms  web CPU ms/call |  reference: req/s   p50 ms   p99 ms  web CPU ms/call")
        for row in compare["rows"]:
            a, b = row["current"], row[compare["ref"]]
            lines.append(f"   {row['concurrency']:>4} | {a['rps']:>14.0f} {a['p50_ms']:>8.2f} {a['p99_ms']:>8.2f} {a['web_cpu_ms_per_call']:>16.3f} |"
                         f" {b['rps']:>17.0f} {b['p50_ms']:>8.2f} {b['p99_ms']:>8.2f} {b['web_cpu_ms_per_call']:>16.3f}")
        lines.append("")
    crowd = results.get("crowd")
    if crowd:
        c = crowd["http"]
        peak = c["gateway_peak"]
        lines.append(f"6. {crowd['calls']} concurrent calls to `sleep` ({crowd['sleep_s']} s), one connection each, held open through the HTTP door"
                     f" (server timeout_ms {crowd.get('server_timeout_ms', 10000)})")
        d = crowd.get("direct")
        if d:
            lines.append(f"   up:   ok {d['ok']}/{d['total']}, p50 {d['p50_ms'] / 1000:.2f} s, p99 {d['p99_ms'] / 1000:.2f} s, max {d['max_ms'] / 1000:.2f} s"
                         " (straight to the upstream, for reference)")
        lines.append(f"   http: ok {c['ok']}/{c['total']}, p50 {c['p50_ms'] / 1000:.2f} s, p99 {c['p99_ms'] / 1000:.2f} s, max {c['max_ms'] / 1000:.2f} s;"
                     f" peak web door RSS {peak['rss_mb']:.0f} MB (PSS {peak['pss_mb']:.0f}), {peak['processes']} processes, {peak['threads']} threads;"
                     f" peak PG processes {c['postgres_peak_processes']}")
        bad = {k: v for k, v in c["codes"].items() if k not in ("200", "OK")}
        if bad:
            lines.append(f"   failures: {bad}")
        lines.append("")
    sessions = results.get("sessions")
    if sessions:
        lines.append("4. session creation (POST .../sessions, persistence on), wrk")
        for p in sessions["points"]:
            lines.append(f"   c{p['connections']:<3} {p['rps']:>6.0f}/s  p50 {p['p50_ms']:.2f} ms  p99 {p['p99_ms']:.2f} ms  errors {p['errors']}"
                         f"  web CPU {p['web_cpu_ms_per_session']:.2f} ms/session"
                         f"  (mcp_sessions rows added {p['persisted_rows_added']} for {p['ok']} x 201)")
        lines.append("")
    grpc = results.get("grpc")
    if grpc:
        c32 = next((r for r in http["rows"] if r["concurrency"] == 32), None) if http else None
        http_rps = c32["gateway"]["rps"] if c32 else None
        lines.append(f"5. gRPC Invoke vs HTTP invoke at c{grpc['concurrency']} ({grpc['client_processes']} grpc.aio client process(es))")
        lines.append(f"   gRPC {grpc['rps']:.0f}/s (p50 {grpc['p50_ms']:.2f} ms, p99 {grpc['p99_ms']:.2f} ms, errors {grpc['errors']}) "
                     f"vs HTTP {_n(http_rps)}/s -> {_n(grpc['rps'] / http_rps if http_rps else None, '{:.2f}x')}")
        ms = grpc["cpu"]["ms_per_call"]
        lines.append(f"   CPU ms/call: gateway_grpc {ms['gateway_grpc']:.3f}, postgresql {ms['postgresql']:.3f}, redis {ms['redis']:.3f}, "
                     f"upstream {ms['upstream']:.3f}, load client {ms['load_client']:.3f} "
                     f"(client busy {', '.join(f'{x:.0%}' for x in grpc['client_cpu_per_process'])} of a core"
                     + ("; the client is the bottleneck" if grpc["client_bound"] else "") + ")")
        lines.append("")
    mcp = results.get("mcp")
    if mcp:
        lines.append(f"8. tools/call echo: the MCP endpoint vs POST .../mcp/invoke, wrk c{mcp['concurrency']} each (one-server session)")
        lines.append("   door              |  req/s   p50 ms   p99 ms  err | gateway web CPU ms/call  ratio")
        labels = {"invoke": "invoke (HTTP)", "mcp_2026": "MCP 2026-07-28", "mcp_2025": "MCP 2025-11-25"}
        for name, p in mcp["points"].items():
            lines.append(f"   {labels[name]:<17} | {p['rps']:>6.0f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f} {p['errors']:>4} |"
                         f" {p['cpu']['ms_per_call']['gateway_web']:>23.3f} {mcp['cpu_ratio'][name]:>5.2f}x")
        lines.append("")
    streams = results.get("streams")
    if streams:
        lines.append(f"9. {streams['streams']:,} idle MCP streams (subscriptions/listen, 2026-07-28) held {streams['held_s']:.0f} s by wrk")
        lines.append(f"   established at peak {streams['peak_established']:,}; web door memory idle {streams['idle']['rss_mb']:.0f} MB RSS "
                     f"({streams['idle']['pss_mb']:.0f} PSS) -> peak {streams['peak']['rss_mb']:.0f} MB RSS ({streams['peak']['pss_mb']:.0f} PSS), "
                     f"+{streams['added_rss_mb']:.0f} MB; wrk socket errors {streams['wrk']['socket_errors']}")
        lines.append("")
    evidence = results.get("evidence")
    if evidence:
        lines.append("Evidence (mcp_invocations rows with status success vs 2xx/OK answers the clients saw)")
        for run_id, e in evidence["runs"].items():
            lines.append(f"   {run_id:<16} rows {e['rows']} (success {e['success']}), answered {e['answered']}"
                         f" (+ up to {e['unseen']} cut off by wrk) -> {e['result']}")
        lines.append("")
    if results.get("gateway_log"):
        log = results["gateway_log"]
        lines.append(f"Gateway logs: {log['problem_lines']} error or traceback lines, {log['http_5xx']} 5xx access lines")
        for k in log["kinds"]:
            lines.append(f"   {k['count']:>5} x {k['kind']}")
        lines.append("")
    lines.append("Budget (issues 10 and 11)")
    width = max(len(r["target"]) for r in results["budget"])
    for r in results["budget"]:
        lines.append(f"   {r['target']:<{width}}  {r['shown']:>26}  {r['result']}")
    return "\n".join(lines)

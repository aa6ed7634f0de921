"""`python -m bench.evidence_pages`: the evidence API and the Studio pages on a run of 1,000,000 rows.

Starts PostgreSQL (durable) and Redis, migrates, writes one run of `--rows` evidence rows with COPY
(a valid hash chain, with a real signed receipt on each row: tests/mcp/evidence_rows.py) plus 200
small runs, starts the web door as the Procfile does, signs in as a browser would, and times each
request on loopback as the client sees it (sequential; p50 / p95 / max over `--repeat` requests):

1. the evidence API's first page on the cold run (no checkpoint yet: it verifies one budget's worth
   and answers "pending"), then the beat task's work to verify the whole chain, then the first page
   with 100 calls made since the last check, and steady;
2. deep pages by `after_seq` (and by `offset`, for contrast), the Studio tab newest first, filtered
   and deep, a row's detail, the live poll, the run index;
3. the whole-run JSONL export, `mcp_evidence verify --file` on it, and the full check
   `mcp_evidence verify RUN` (what every API request cost before the checkpoints).

Writes bench/results/evidence_pages.json; stops everything it started, also on Ctrl-C or failure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx

from bench.stack import PYTHON, ROOT, Stack

RUN = "bench-evidence"
RESULTS = ROOT / "bench" / "results" / "evidence_pages.json"
API = "/api/maestro/v1"


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "n": len(ordered), "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[max(0, round(len(ordered) * 0.95) - 1)], 1), "max_ms": round(ordered[-1], 1),
    }


def timed(client: httpx.Client, path: str, repeat: int, *, check=None) -> dict:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        if check:
            check(answer)
    return summary(samples)


def valid(answer: httpx.Response) -> None:
    if answer.json()["chain"] != "valid":
        raise RuntimeError(f"the chain should be verified by now: {answer.text[:300]}")


def write_rows(rows: int) -> None:
    """In this process, through Django's connection to the bench database."""
    from django.db import connection

    from mcp.receipts import Decision, receipt_issue
    from tests.mcp.evidence_rows import write_chain

    receipt = receipt_issue(
        decision=Decision(allow=True, reason="builtin rules allow", engine="builtin", policy="builtin/v1"),
        input_digest="d" * 64, run_id=RUN, sid="s" * 32, server="alpha", tool="echo",
    )
    start = datetime.now(tz=UTC) - timedelta(milliseconds=rows + 60_000)
    for n in range(200):
        write_chain(f"bench-small-{n:03d}", 100, start=start - timedelta(hours=1, minutes=n), receipt=receipt)
    write_chain(RUN, rows, start=start, receipt=receipt)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE mcp_invocations")


def append_rows(count: int) -> None:
    from mcp.models import Invocation
    from tests.mcp.evidence_rows import write_chain

    head = Invocation.objects.filter(run_id=RUN).order_by("-seq").first()
    write_chain(RUN, count, first_seq=head.seq + 1, prev_hash=head.hash, start=datetime.now(tz=UTC))


def sign_in(base_url: str) -> httpx.Client:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("bench", password="bench-password-123", is_staff=True)
    browser = httpx.Client(base_url=base_url, timeout=120)
    browser.get("/login")
    answer = browser.post("/login", data={"username": "bench", "password": "bench-password-123", "csrfmiddlewaretoken": browser.cookies["csrftoken"]})
    if answer.status_code != 302:
        raise RuntimeError(f"signing in: {answer.status_code}")
    return browser


def manage_seconds(env: dict, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    return time.perf_counter() - started, (result.stdout or result.stderr).strip().splitlines()[-1]


def measure(stack: Stack, args) -> dict:
    out: dict = {"rows": args.rows}
    started = time.perf_counter()
    write_rows(args.rows)
    out["write_s"] = round(time.perf_counter() - started, 1)
    print(f"wrote {args.rows:,} rows (+200 runs of 100) in {out['write_s']} s", flush=True)
    stack.start_gateway(grpc=False)
    api = httpx.Client(base_url=stack.url(""), timeout=120, headers={"X-API-Key": stack.api_key})
    browser = sign_in(stack.url(""))
    first_page = f"{API}/runs/{RUN}/mcp/evidence?limit=50"
    for _ in range(10):  # every web worker has served a request or two: the cold run is measured, not a cold process
        api.get(f"{API}/runs/bench-small-000/mcp/evidence?limit=50")

    cold = api.get(first_page)
    out["api_cold"] = {"ms": round(cold.elapsed.total_seconds() * 1000, 1), "verification": cold.json()["verification"]}

    from mcp.services.evidence_chain import chain_status, chains_advance

    started = time.perf_counter()
    chain_status(run_id=RUN, budget_s=3600)  # what the beat task does for this run, in one go
    out["verify_all_s"] = round(time.perf_counter() - started, 1)
    out["verify_rows_per_s"] = round(args.rows / out["verify_all_s"])
    chains_advance(budget_s=600)  # and the small runs

    append_rows(100)
    fresh = api.get(first_page)
    out["api_after_100_new"] = {"ms": round(fresh.elapsed.total_seconds() * 1000, 1), "verification": fresh.json()["verification"]}
    n = args.repeat
    out["api_first_page"] = timed(api, first_page, n, check=valid)
    deep, middle = args.rows * 9 // 10, args.rows // 2
    out["api_after_seq_deep"] = timed(api, f"{API}/runs/{RUN}/mcp/evidence?limit=50&after_seq={deep}", n, check=valid)
    out["api_offset_deep"] = timed(api, f"{API}/runs/{RUN}/mcp/evidence?limit=50&offset={deep}", max(3, n // 4))
    out["studio_tab"] = timed(browser, f"/studio/runs/{RUN}", n)
    out["studio_tab_status_denied"] = timed(browser, f"/studio/runs/{RUN}?status=denied", n)
    out["studio_tab_no_match_filter"] = timed(browser, f"/studio/runs/{RUN}?tool=no-such-tool", max(3, n // 4))
    out["studio_tab_before_middle"] = timed(browser, f"/studio/runs/{RUN}?before={middle}", n)
    out["studio_row"] = timed(browser, f"/studio/runs/{RUN}/evidence/{middle + 1}", n)
    out["studio_live_poll"] = timed(browser, f"/studio/runs/{RUN}/live", n)
    out["studio_run_index"] = timed(browser, "/studio/runs", n)
    out["registry"] = timed(browser, "/mcp/registry", n)

    if not args.skip_export:
        path = stack.logdir / "export.jsonl"
        started = time.perf_counter()
        with browser.stream("GET", f"/studio/runs/{RUN}/evidence.jsonl") as answer, open(path, "wb") as file:
            for chunk in answer.iter_bytes():
                file.write(chunk)
        seconds = time.perf_counter() - started
        out["export"] = {"s": round(seconds, 1), "mb": round(path.stat().st_size / 1e6, 1), "rows_per_s": round((args.rows + 100) / seconds)}
        seconds, said = manage_seconds(stack.env, "mcp_evidence", "verify", "--file", str(path))
        out["verify_file"] = {"s": round(seconds, 1), "said": said}
        seconds, said = manage_seconds(stack.env, "mcp_evidence", "verify", RUN)
        out["verify_full_db"] = {"s": round(seconds, 1), "said": said}
    return out


def show(out: dict) -> None:
    deep, middle = out["rows"] * 9 // 10, out["rows"] // 2
    print(f"\nEvidence pages at {out['rows']:,} rows (one run; p50 / p95 / max ms over sequential requests)")
    cold = out["api_cold"]
    print(f"  API first page, cold run (no checkpoint)     {cold['ms']:8.1f} ms  -> {cold['verification']['chain']}, "
          f"verified through #{cold['verification']['verified_through']:,}")
    print(f"  verifying the whole chain (beat task)         {out['verify_all_s']:8.1f} s   ({out['verify_rows_per_s']:,} rows/s)")
    fresh = out["api_after_100_new"]
    print(f"  API first page, 100 calls since last check    {fresh['ms']:8.1f} ms  -> {fresh['verification']['chain']}")
    for key, label in [
        ("api_first_page", "API first page (limit 50)"), ("api_after_seq_deep", f"API ?after_seq={deep:,}"),
        ("api_offset_deep", f"API ?offset={deep:,} (row offset)"), ("studio_tab", "Studio tab, newest"),
        ("studio_tab_status_denied", "Studio tab ?status=denied"), ("studio_tab_no_match_filter", "Studio tab, filter matching nothing"),
        ("studio_tab_before_middle", f"Studio tab ?before={middle:,}"), ("studio_row", "Studio row detail"),
        ("studio_live_poll", "Studio live poll"), ("studio_run_index", "Studio run index"), ("registry", "Registry"),
    ]:
        row = out[key]
        print(f"  {label:<45} {row['p50_ms']:8.1f} / {row['p95_ms']:.1f} / {row['max_ms']:.1f}")
    if "export" in out:
        print(f"  JSONL export of the run                       {out['export']['s']:8.1f} s   ({out['export']['mb']} MB, {out['export']['rows_per_s']:,} rows/s)")
        print(f"  mcp_evidence verify --file (offline)          {out['verify_file']['s']:8.1f} s   {out['verify_file']['said'][:60]}")
        print(f"  mcp_evidence verify RUN (the full check: what {out['verify_full_db']['s']:6.1f} s   each API request cost before)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-export", action="store_true", help="skip the export and the two full checks (minutes at 1M rows)")
    args = parser.parse_args(argv)
    stack = Stack(pg_max_connections=200)
    try:
        stack.start_dependencies()
        stack.env = stack.base_env()
        stack.migrate_and_key()
        os.environ.update({k: v for k, v in stack.env.items() if k in ("DATABASE_URL", "REDIS_URL", "SESSION_SECRET", "DJANGO_DOTENV_FILE", "MAESTRO_DATA_DIR")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "maestro.settings")
        import django

        django.setup()
        out = measure(stack, args)
    except KeyboardInterrupt:
        return 130
    finally:
        stack.close()
    show(out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

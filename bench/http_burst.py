"""Fire exactly N HTTP POSTs at once, one connection each, and wait for all of them
(`python -m bench.http_burst ...`; one JSON line on stdout).

wrk cannot say "exactly 1,000 calls": with -c1000 for a duration it keeps re-sending and cuts the
last ones off. Plain asyncio streams instead of an HTTP library: the client does 1,000 requests in
total and must not take CPU from the gateway it measures. Latency runs from connect to the last
byte of the body, as the caller sees it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _error_code(body: bytes) -> str:
    # The gateway's one error shape, {"error": {"code": ...}}: the code says which limit or part failed.
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "?"


async def _one(host: str, port: int, payload: bytes, timeout: float, latencies: list, codes: Counter) -> None:
    started = time.perf_counter()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(payload)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
        codes[str(status) if 200 <= status < 300 else f"{status} {_error_code(body)}"] += 1
    except TimeoutError:
        codes["timeout"] += 1
    except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
        codes[type(exc).__name__] += 1
    finally:
        if writer is not None:
            writer.close()
    latencies.append((time.perf_counter() - started) * 1000)


async def main_async(args) -> dict:
    url = urlsplit(args.url)
    body = args.body.encode()
    head = [f"POST {url.path} HTTP/1.1", f"Host: {url.netloc}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Connection: close"]
    head += [h for h in args.header]
    payload = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    cpu0, t0 = _cpu(), time.perf_counter()
    await asyncio.gather(*(_one(url.hostname, url.port, payload, args.timeout, latencies, codes) for _ in range(args.n)))
    return {
        "total": args.n,
        "ok": sum(v for k, v in codes.items() if k.isdigit() and 200 <= int(k) < 300),
        "codes": dict(codes),
        "wall_s": round(time.perf_counter() - t0, 3),
        "cpu_s": round(_cpu() - cpu0, 3),
        "latencies_ms": [round(x, 3) for x in sorted(latencies)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(main_async(args))) + "\n")


if __name__ == "__main__":
    main()

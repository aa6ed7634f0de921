"""gRPC load client, run as its own process (`python -m bench.grpc_load ...`) so its CPU is its own
and can be measured: `--duration` keeps `--concurrency` calls in flight for that long;
`--burst N` fires exactly N calls at once. Prints one JSON line on stdout.

There is no ghz or other C gRPC load tool on this machine, so this is grpc.aio (the C core does
the HTTP/2 work; Python only builds requests and awaits). It reports its own CPU time: a client
near one full core is the bottleneck, not the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter

import grpc
from grpc import aio

from mcp.grpc import gateway_pb2, gateway_pb2_grpc


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _call(stub, request, metadata, timeout, latencies, codes) -> None:
    started = time.perf_counter()
    try:
        await stub.Invoke(request, metadata=metadata, timeout=timeout)
        codes["OK"] += 1
    except aio.AioRpcError as err:
        codes[err.code().name] += 1
    latencies.append((time.perf_counter() - started) * 1000)


async def main_async(args) -> dict:
    # Separate channels are separate HTTP/2 connections: they spread a burst, and they reach all
    # of run_grpc's worker processes (which share the port by connection). A local subchannel
    # pool stops grpc from silently sharing one connection between them.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    stubs = [gateway_pb2_grpc.McpGatewayStub(ch) for ch in channels]
    metadata = (("authorization", f"Bearer {args.token}"),)
    request = gateway_pb2.InvokeRequest(run_id=args.run, server=args.server, tool=args.tool)
    request.arguments.update(json.loads(args.arguments))
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), timeout=10)

    warm_codes: Counter[str] = Counter()
    warm: list[float] = []
    for _ in range(args.warmup):
        await _call(stubs[0], request, metadata, args.timeout, warm, warm_codes)

    latencies: list[float] = []
    codes: Counter[str] = Counter()
    cpu0, t0 = _cpu(), time.perf_counter()
    if args.burst:
        await asyncio.gather(*(_call(stubs[i % len(stubs)], request, metadata, args.timeout, latencies, codes) for i in range(args.burst)))
    else:
        deadline = time.monotonic() + args.duration

        async def worker(stub) -> None:
            # No new call after the deadline, and every started call is awaited: the counts are exact.
            while time.monotonic() < deadline:
                await _call(stub, request, metadata, args.timeout, latencies, codes)

        await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(args.concurrency)))
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    for ch in channels:
        await ch.close()
    return {
        "ok": codes.get("OK", 0),
        "total": sum(codes.values()),
        "codes": dict(codes),
        "warmup_ok": warm_codes.get("OK", 0),
        "warmup_codes": dict(warm_codes),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "latencies_ms": [round(x, 3) for x in sorted(latencies)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--arguments", default='{"text": "hello"}')
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--burst", type=int, default=0)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

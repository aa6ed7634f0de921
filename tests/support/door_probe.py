"""`python -m tests.support.door_probe`: a door as small as it gets, for the metrics tests. It
starts its metrics folder as a door does (maestro.prometheus.door_start), forks two workers that
count and hold a live gauge, SIGKILLs one, and prints what one scrape sums, before and after, as
JSON on stdout."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal

from maestro.config import load_settings_or_exit


def main() -> None:
    load_settings_or_exit()
    from maestro.prometheus import door_start

    door_start("probe")
    from prometheus_client import Counter, Gauge

    from maestro.prometheus import scrape_registry

    calls = Counter("probe_calls", "calls served")
    busy = Gauge("probe_busy", "calls in flight", multiprocess_mode="livesum")

    def worker(ready) -> None:
        calls.inc(5)
        busy.inc()
        ready.set()
        signal.pause()  # until killed

    context = multiprocessing.get_context("fork")
    readies = [context.Event() for _ in range(2)]
    workers = [context.Process(target=worker, args=(ready,)) for ready in readies]
    for process in workers:
        process.start()
    for ready in readies:
        ready.wait(10)

    def sums() -> dict:
        registry = scrape_registry()
        return {name: registry.get_sample_value(name) for name in ("probe_calls_total", "probe_busy")}

    before = sums()
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].join()
    after = sums()
    workers[1].kill()
    workers[1].join()
    print(json.dumps({"before": before, "after": after}))


if __name__ == "__main__":
    main()

"""`python -m maestro.web`: the web door, maestro.asgi's application under granian.

One event loop (uvloop) per worker process and a worker per core (WEB_CONCURRENCY): the data plane
serves every call on its worker's loop, so a call waiting on a slow tool costs a coroutine, not a
thread (DESIGN section 1). Django, behind it, runs on MAESTRO_HTTP_THREADS threads per worker.
Granian itself (HTTP in Rust) costs about 0.03 ms of CPU per request before Python runs.

Settings are validated here, before any worker starts: a missing SESSION_SECRET is one line and
exit status 2, not a crash loop of workers.
"""

from __future__ import annotations

from maestro.config import config_errors_exit, load_settings_or_exit


def main() -> None:
    load_settings_or_exit()
    from granian import Granian
    from granian.constants import Interfaces, Loops

    from maestro import settings
    from maestro.prometheus import door_start

    with config_errors_exit():
        door_start("web")  # before the workers start: /metrics sums them all
    host, _, port = settings.HTTP_BIND.rpartition(":")
    Granian(
        "maestro.asgi:application",
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        address=host.strip("[]") or "127.0.0.1",
        port=int(port),
        workers=settings.HTTP_WORKERS,
        # Requests one worker takes on at once: open streams and slow tool calls wait as
        # coroutines, so this is about memory (a few KB each), not threads.
        backpressure=settings.HTTP_MAX_CONCURRENCY,
        backlog=4096,
        websockets=False,
        # The access log is the app's own (JSON, redacted: maestro.logs); granian logs start/stop.
        log_access=False,
        workers_kill_timeout=20,
        # A worker that dies is replaced (its counters stay in the door's metrics); granian still
        # gives up on a worker that dies again within seconds of being replaced.
        respawn_failed_workers=True,
    ).serve()


if __name__ == "__main__":
    main()

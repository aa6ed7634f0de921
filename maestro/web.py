"""`python -m maestro.web`: the web door, Django's WSGI app under granian.

Why granian and not gunicorn: measured here with wrk, gunicorn's gthread worker costs about 0.2 ms
of CPU per request before Django runs; granian (HTTP in Rust, the WSGI app on a pool of Python
threads) costs about 0.03 ms. Threads, not async, because the invoke core is synchronous (DESIGN
section 1). Granian starts its threads on demand and retires idle ones, so MAESTRO_HTTP_THREADS
is a ceiling (how many calls a worker serves at once, slow tools included), not a standing cost.

Settings are validated here, before any worker starts: a missing SESSION_SECRET is one line and
exit status 2, not a crash loop of workers.
"""

from __future__ import annotations

from maestro.config import config_errors_exit, load_settings_or_exit


CONNECTIONS_PER_WORKER = 8192


def main() -> None:
    load_settings_or_exit()
    from granian import Granian
    from granian.constants import Interfaces

    from maestro import settings
    from maestro.prometheus import door_start

    with config_errors_exit():
        door_start("web")  # before the workers start: /metrics sums them all
    host, _, port = settings.HTTP_BIND.rpartition(":")
    Granian(
        "maestro.wsgi:application",
        interface=Interfaces.WSGI,
        address=host.strip("[]") or "127.0.0.1",
        port=int(port),
        workers=settings.HTTP_WORKERS,
        blocking_threads=settings.HTTP_THREADS,
        # Granian's backpressure counts open connections, idle keep-alive ones included: set to
        # the thread count it starved new clients behind idle ones (measured: 50 clients, 32
        # threads, 18 calls stuck until others disconnected). Threads already bound the Python
        # work; connections beyond them wait in Rust for a thread, costing next to nothing.
        backpressure=max(CONNECTIONS_PER_WORKER, settings.HTTP_THREADS),
        # The access log is the app's own (JSON, redacted: maestro.logs); granian logs start/stop.
        log_access=False,
        workers_kill_timeout=20,
        # A worker that dies is replaced (its counters stay in the door's metrics); granian still
        # gives up on a worker that dies again within seconds of being replaced.
        respawn_failed_workers=True,
    ).serve()


if __name__ == "__main__":
    main()

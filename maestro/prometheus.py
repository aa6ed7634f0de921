"""Metrics that are right across worker processes: one `/metrics` per door, summing its workers.

A door (the web server, run_grpc) runs several worker processes; a scrape reaches one of them, so
per-process counters would show one worker's share and jump between scrapes. Here every process
of a door writes its values to files in the door's directory (prometheus_client's multiprocess
mode) and a scrape sums them:

- `door_start(door)`: called by the door's entry point before it starts workers. Empties
  `MAESTRO_METRICS_DIR/<door>` (stale files from an earlier run would add up), records the door's
  main pid, and switches the process (and the workers it will start) to multiprocess mode.
- `scrape_registry()`: what a scrape answers. In a door: the files summed (`DoorCollector`), the
  door's process metrics, and the scrape-time collectors registered for that door. Elsewhere
  (tests in one process, manage.py commands): the process's own default registry.
- Dead workers: counters and histograms of an exited worker stay in the sum (so a restart does not
  make counters go backwards); its `live*` gauges (in-flight calls) are dropped at the next
  scrape, once the process is no longer among the door's processes.

Nothing here imports prometheus_client at module level: it chooses its mode when first imported,
and the web door's main process imports this module before setting the mode.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from maestro.config import ConfigError

# prometheus_client reads this variable itself; only door_start sets it (configuration is
# MAESTRO_METRICS_DIR, in settings).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DOOR_FILE = "door.json"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


def door_start(door: str) -> Path:
    """Prepare this door's metrics directory and enter multiprocess mode; returns the directory.

    prometheus_client picks its mode when first imported. A door that imported it already
    (run_grpc: Django loaded it before the command ran) is re-executed here, same pid and
    arguments, with the mode set; the re-executed process finds its directory ready and goes on.
    """
    from django.conf import settings

    directory = Path(settings.METRICS_DIR) / door
    if os.environ.get(MULTIPROC_ENV) == str(directory) and door_info(directory).get("pid") == os.getpid():
        return directory
    try:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        (directory / DOOR_FILE).write_text(json.dumps({"door": door, "pid": os.getpid()}))
    except OSError as exc:
        raise ConfigError(f"MAESTRO_METRICS_DIR={str(settings.METRICS_DIR)!r}: cannot prepare {directory} ({exc.strerror or exc})") from None
    os.environ[MULTIPROC_ENV] = str(directory)
    if "prometheus_client" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return directory


def multiprocess_directory() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value and Path(value).is_dir() else None


def door_info(directory: Path) -> dict:
    try:
        return json.loads((directory / DOOR_FILE).read_text())
    except (OSError, ValueError):
        return {}


# --- what a scrape answers ---------------------------------------------------------------------------

_scrape_collectors: list[tuple[object, frozenset[str] | None]] = []
_registry = None
_registry_door: str | None = None
_registry_lock = threading.Lock()


def register_collector(collector, *, doors: Iterable[str] | None = None) -> None:
    """A collector computed at scrape time (e.g. from the database), served by the given doors
    (all when None). Called from AppConfig.ready()."""
    from prometheus_client import REGISTRY

    only = frozenset(doors) if doors is not None else None
    with _registry_lock:
        if any(existing is collector for existing, _ in _scrape_collectors):
            return
        _scrape_collectors.append((collector, only))
        if multiprocess_directory() is None:
            REGISTRY.register(collector)
        elif _registry is not None and _serves(only, _registry_door):
            _registry.register(collector)


def _serves(doors: frozenset[str] | None, door: str | None) -> bool:
    return doors is None or door in doors


def scrape_registry():
    """The registry /metrics renders: the door's sum in a door, the process's own elsewhere."""
    global _registry, _registry_door
    from prometheus_client import REGISTRY, CollectorRegistry

    directory = multiprocess_directory()
    if directory is None:
        return REGISTRY
    with _registry_lock:
        if _registry is None:
            registry = CollectorRegistry(auto_describe=False)
            _registry_door = door_info(directory).get("door")
            registry.register(DoorCollector(directory))
            for collector, doors in _scrape_collectors:
                if _serves(doors, _registry_door):
                    registry.register(collector)
            _registry = registry
        return _registry


def metrics_view(request):
    """GET /metrics (the web door): Prometheus text format, summed over the door's workers."""
    from django.http import HttpResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)


def serve_http(bind: str | None) -> tuple[str, int] | None:
    """Serve /metrics on HOST:PORT from a daemon thread (the gRPC door); None: metrics off."""
    if not bind:
        return None
    from prometheus_client import start_http_server

    host, _, port = bind.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=scrape_registry())
    return server.server_address[:2]


# --- the door's sum --------------------------------------------------------------------------------


class DoorCollector:
    """The door's multiprocess files, summed, after dropping dead workers' live gauges; plus the
    door's process metrics (all its processes together), under the usual `process_*` names."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.root = door_info(directory).get("pid")

    def collect(self):
        from prometheus_client.multiprocess import MultiProcessCollector

        processes = door_processes(self.root) if self.root else None
        self._forget_dead(processes)
        yield from MultiProcessCollector(None, path=str(self.directory)).collect()
        if processes:
            yield from _process_families(processes, self.root)

    def describe(self):
        return []

    def _forget_dead(self, processes: dict[int, list[bytes]] | None) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        for path in glob.glob(str(self.directory / "gauge_live*_*.db")):
            match = _LIVE_GAUGE_FILE.search(path)
            if match and not _alive(int(match.group(1)), processes):
                mark_process_dead(int(match.group(1)), path=str(self.directory))


def _alive(pid: int, processes: dict[int, list[bytes]] | None) -> bool:
    if processes is not None:
        # Among the door's processes, not merely alive: a pid the system gave to something else
        # after the worker died must not keep the worker's gauges.
        return pid in processes
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2 :].split()


def door_processes(root: int) -> dict[int, list[bytes]] | None:
    """The door's main process and all its descendants, live (zombies excluded), with their stat
    fields; None where there is no /proc."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    stats: dict[int, list[bytes]] = {}
    children: dict[int, list[int]] = {}
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields is None or fields[0] == b"Z":
            continue
        pid = int(name)
        stats[pid] = fields
        children.setdefault(int(fields[1]), []).append(pid)
    if root not in stats:
        return {}
    found, pending = {}, [root]
    while pending:
        pid = pending.pop()
        found[pid] = stats[pid]
        pending.extend(children.get(pid, ()))
    return found


# stat fields counted from the state (index 0): utime 11, stime 12, cutime 13, cstime 14,
# num_threads 17, starttime 19, rss 21 (pages).
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _boot_time() -> float:
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _process_families(processes: dict[int, list[bytes]], root: int):
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    cpu = 0.0
    for pid, fields in processes.items():
        cpu += (int(fields[11]) + int(fields[12])) / _TICKS
    # Workers that exited and were reaped by the main process add their CPU to its cutime/cstime,
    # so the total does not drop when a worker is replaced.
    cpu += (int(processes[root][13]) + int(processes[root][14])) / _TICKS
    yield CounterMetricFamily("process_cpu_seconds_total", "CPU time of the door's processes (live ones, plus exited workers)", value=cpu)
    yield GaugeMetricFamily(
        "process_resident_memory_bytes", "Resident memory of the door's processes, summed",
        value=float(sum(int(fields[21]) for fields in processes.values()) * _PAGE),
    )
    yield GaugeMetricFamily("process_open_fds", "Open file descriptors of the door's processes, summed", value=float(sum(_open_fds(p) for p in processes)))
    yield GaugeMetricFamily("process_threads", "Threads of the door's processes, summed", value=float(sum(int(f[17]) for f in processes.values())))
    yield GaugeMetricFamily(
        "process_start_time_seconds", "Start of the door's main process, seconds since the epoch",
        value=_boot_time() + int(processes[root][19]) / _TICKS,
    )
    yield GaugeMetricFamily("maestro_door_processes", "Processes of the door: its main process and its workers", value=float(len(processes)))

"""CPU time and memory of process trees, read from /proc, and a description of the machine.

CPU is utime+stime+cutime+cstime: a child that exits during a run and is reaped by its parent
(a PostgreSQL backend, a web worker) moves its time into the parent's cutime, so summing all
four fields over the live tree counts it exactly once.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable, Iterable

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def parent_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree(roots: Iterable[int]) -> list[int]:
    """The roots and all their live descendants."""
    children = parent_map()
    seen: list[int] = []
    stack = [r for r in roots if r and os.path.exists(f"/proc/{r}")]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.append(pid)
        stack.extend(children.get(pid, []))
    return seen


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    if not fields:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


class CpuMeter:
    """Snapshots of named process groups; `delta` is the CPU each group used in between."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def delta(self, before: dict[str, dict[int, float]]) -> dict[str, float]:
        after = self.snapshot()
        used = {}
        for name, pids in after.items():
            old = before.get(name, {})
            # A pid that appeared during the run started during it: all its time counts.
            used[name] = round(sum(max(0.0, cpu - old.get(pid, 0.0)) for pid, cpu in pids.items()), 3)
        return used


def _field_kb(path: str, key: str) -> int:
    """The `key:  N kB` line of a /proc file (status, meminfo); 0 when absent or unreadable."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _status_kb(pid: int, key: str) -> int:
    return _field_kb(f"/proc/{pid}/status", key)


def rss_mb(pids: Iterable[int]) -> float:
    """Resident memory of these processes together, in MB."""
    return round(sum(_status_kb(p, "VmRSS") for p in pids) / 1024, 1)


def pss_kb(pid: int) -> int:
    # PSS splits pages shared after fork between the processes, so the sum is the real footprint.
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakSampler(threading.Thread):
    """Every `interval` s: the RSS and PSS sums and the process and thread counts of each group;
    keeps the peaks."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 0.1):
        super().__init__(daemon=True)
        self.groups = groups
        self.interval = interval
        self.peaks = {name: {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0, "threads": 0} for name in groups}
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name, pids in self.groups.items():
                live = pids()
                peak = self.peaks[name]
                peak["rss_mb"] = max(peak["rss_mb"], round(sum(_status_kb(p, "VmRSS") for p in live) / 1024, 1))
                peak["pss_mb"] = max(peak["pss_mb"], round(sum(pss_kb(p) for p in live) / 1024, 1))
                peak["processes"] = max(peak["processes"], len(live))
                peak["threads"] = max(peak["threads"], sum(_status_kb(p, "Threads") for p in live))
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> dict:
        self._halt.set()
        self.join(timeout=2)
        return self.peaks


def thread_count(pids: Iterable[int]) -> int:
    return sum(_status_kb(p, "Threads") for p in pids)


def machine_info() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = _meminfo_kb("MemTotal")
    try:
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        wrk = "unknown"
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "wrk": wrk.split(" Copyright")[0],
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _meminfo_kb(key: str) -> int:
    return _field_kb("/proc/meminfo", key)


def _os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def wait_quiet(max_load: float, max_wait_s: float) -> float:
    """Wait (up to max_wait_s) for the 1-minute load average to fall below max_load; returns it."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = os.getloadavg()[0]
        if load < max_load or time.monotonic() >= deadline:
            return load
        time.sleep(5)

"""Debian's Prometheus (`apt-get install prometheus`; scripts/ensure-system-deps.sh) for tests: started
from the binary in a temporary folder on a free loopback port, scraping the given targets every
second and evaluating the given rule files, queried through its HTTP API, stopped at the end."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from tests.support.services import free_port, stop_process

SCRAPE_SECONDS = 1


def prometheus_binary(name: str = "prometheus") -> str:
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: apt-get install prometheus (or run `make test`, which does)")
    return found


class PrometheusServer:
    def __init__(self, *, jobs: dict[str, list[str]], rule_files: list[Path] = ()):
        """`jobs`: job name -> HOST:PORT targets whose /metrics to scrape."""
        self.root = Path(tempfile.mkdtemp(prefix="maestro-prometheus-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in jobs.items()],
        }
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process: subprocess.Popen | None = None

    def start(self) -> "PrometheusServer":
        self.log = open(self.root / "prometheus.log", "wb")
        self.process = subprocess.Popen(
            [
                prometheus_binary(), f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
            ],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus did not become ready:\n{self.log_tail()}")

    def query(self, expr: str, at: float | None = None) -> dict:
        """The API's answer to an instant query: {"status", "data": {"resultType", "result"}} or an error."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()

    def value(self, expr: str) -> float | None:
        """The single value of a scalar-like query, None when it has no result."""
        result = self.query(expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def series_exists(self, name: str) -> bool:
        answer = httpx.get(f"{self.url}/api/v1/series", params={"match[]": name}, timeout=10).json()
        return bool(answer.get("data"))

    def get(self, path: str) -> dict:
        return httpx.get(f"{self.url}{path}", timeout=10).json()

    def log_tail(self) -> str:
        return (self.root / "prometheus.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

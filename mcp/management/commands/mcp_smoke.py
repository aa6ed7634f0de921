"""`python manage.py mcp_smoke --url URL --api-key KEY [--upstream URL]`: the one-pager's smoke
steps against a live deployment, one table row per step as it runs; exit status 1 at the first
failed step. `--expect-disabled`: the rollback drill (MCP routes 404, health still up)."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from mcp.smoke import Step, smoke_disabled_run, smoke_run

RESULT = {"ok": "ok", "fail": "FAIL", "skip": "skip"}


def _http_url(value: str, option: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise CommandError(f"{option}: expected an http:// or https:// URL, got {value!r}")
    return value


def _json_object(value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise CommandError(f"--arguments: not JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise CommandError("--arguments: expected a JSON object, e.g. '{\"text\": \"hi\"}'")
    return parsed


class Command(BaseCommand):
    help = "Run the operator smoke steps against a live gateway over HTTP (or, with --expect-disabled, the rollback drill)."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="the gateway's base URL, e.g. https://maestro.example.com")
        parser.add_argument("--api-key", help="an operator API key with admin:mcp (not needed with --expect-disabled)")
        parser.add_argument("--upstream", help="an MCP server URL to register for the run (removed at the end)")
        parser.add_argument("--server", help="use this registered server (id or name) instead of registering one")
        parser.add_argument("--tool", help="the tool to invoke (default: echo, else the first tool with plain required arguments)")
        parser.add_argument("--arguments", help="the tool's arguments as a JSON object (default: filled from its input schema)")
        parser.add_argument("--run-id", help="the run id to use (default: smoke-<UTC time>-<random>)")
        parser.add_argument("--timeout", type=float, default=15.0, help="seconds per request (default 15)")
        parser.add_argument("--expect-disabled", action="store_true", help="check MAESTRO_MCP_ENABLED=false: MCP routes 404, health 200")
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON report at the end instead of the table")

    def handle(self, *args, url, api_key, upstream, server, tool, arguments, run_id, timeout, expect_disabled, as_json: bool, **options):
        url = _http_url(url, "--url")
        if timeout <= 0:
            raise CommandError("--timeout: must be a positive number of seconds")
        on_step = (lambda step: None) if as_json else self._row
        if not as_json:
            self.stdout.write(f"{'step':<30} {'result':<6} {'time':>9}  detail")
        if expect_disabled:
            report = smoke_disabled_run(url=url, on_step=on_step, timeout=timeout)
        else:
            if not api_key:
                raise CommandError("--api-key is required (an operator key with admin:mcp), except with --expect-disabled")
            if upstream and server:
                raise CommandError("give --upstream or --server, not both")
            report = smoke_run(
                url=url, api_key=api_key, on_step=on_step, upstream=_http_url(upstream, "--upstream") if upstream else None,
                server=server, tool=tool, arguments=_json_object(arguments), run_id=run_id, timeout=timeout,
            )
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        if not report.ok:
            raise CommandError(f"smoke failed at {report.failed.step!r}: {report.failed.detail}", returncode=1)
        if not as_json:
            self.stdout.write(self.style.SUCCESS(f"smoke passed: {len(report.steps)} steps against {url}"))

    def _row(self, step: Step) -> None:
        line = f"{step.step:<30} {RESULT[step.result]:<6} {step.ms:>7.1f}ms  {step.detail}"
        style = {"ok": self.style.SUCCESS, "fail": self.style.ERROR, "skip": self.style.WARNING}[step.result]
        self.stdout.write(style(line))

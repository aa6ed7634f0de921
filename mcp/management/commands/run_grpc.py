"""`python manage.py run_grpc`: the gRPC door, on MCP_GRPC_BIND, until SIGTERM; then it drains."""

from __future__ import annotations

import logging
import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from maestro import telemetry
from maestro.config import ConfigError
from maestro.prometheus import door_start
from mcp.grpc.server import load_tls, serve, serve_workers, wait_for_signal_event

DISABLED = "MAESTRO_MCP_ENABLED=false: the gRPC gateway is disabled and does not serve (set MAESTRO_MCP_ENABLED=true to enable it)"


class Command(BaseCommand):
    help = "Serve the McpGateway gRPC service (plus grpc.health.v1 and reflection) until SIGTERM, then drain."

    def add_arguments(self, parser):
        # Below docker's 10 s stop timeout, so the drain ends before SIGKILL would.
        parser.add_argument("--grace", type=float, default=8.0, help="seconds in-flight calls get after SIGTERM (default 8)")
        parser.add_argument(
            "--idle-when-disabled", action="store_true",
            help="when MCP is disabled, say so and wait for SIGTERM instead of exiting (for process managers such as "
                 "honcho that stop every process when one exits)",
        )

    def handle(self, *args, grace: float, idle_when_disabled: bool, **options):
        if grace < 0:
            raise CommandError("--grace must be zero or more seconds")
        if not settings.MAESTRO_MCP_ENABLED:
            if not idle_when_disabled:
                raise CommandError(DISABLED)
            stop = wait_for_signal_event()  # first: once the line is out, SIGTERM is a clean stop
            self.stderr.write(DISABLED)
            self.stderr.flush()
            while not stop.wait(0.5):
                pass
            return
        try:
            door_start("grpc")  # before the workers fork: MCP_GRPC_METRICS_BIND sums them all
            tls = load_tls(cert=settings.MCP_GRPC_TLS_CERT, key=settings.MCP_GRPC_TLS_KEY, ca=settings.MCP_GRPC_TLS_CA)
            options = dict(
                bind=settings.MCP_GRPC_BIND, max_in_flight=settings.MCP_GRPC_MAX_IN_FLIGHT,
                default_deadline_ms=settings.MCP_GRPC_DEFAULT_DEADLINE_MS, tls=tls, grace_s=grace,
                metrics_bind=settings.MCP_GRPC_METRICS_BIND, max_request_bytes=settings.MCP_MAX_REQUEST_BYTES,
                log_requests=settings.LOG_REQUESTS,
            )
            if settings.MCP_GRPC_WORKERS > 1:
                raise SystemExit(serve_workers(workers=settings.MCP_GRPC_WORKERS, **options))
            abandoned = serve(**options)
        except ConfigError as exc:
            # The same one line as a bad setting (maestro.config), not a traceback.
            sys.stderr.write(f"maestro: configuration error: {exc}\n")
            sys.stderr.flush()
            raise SystemExit(2) from None
        if abandoned:
            # The drain is bounded: Python's exit would join the pool's threads, so calls still
            # running after the grace period (each bounded by its own deadline) would hold the
            # process. They have been cancelled; exit now, once the logs are out.
            telemetry.shutdown()  # os._exit skips the exit hooks that would flush the queued spans
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

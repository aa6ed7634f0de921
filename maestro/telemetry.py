"""OpenTelemetry traces. Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test installs an
exporter): then the route middleware opens `mcp/servers` and `mcp/runs` spans, and the services
add child spans (invoke, session) with labels. When off, nothing on the hot path touches OTel.

Spans leave in batches (BatchSpanProcessor, every few seconds); the batch still queued when a
process exits is flushed first (`shutdown`, also run by multiprocessing's exit handlers, which is
how the web door's forked workers end), so a graceful stop loses no span.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import re
from contextlib import contextmanager, nullcontext

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_provider: TracerProvider | None = None
_tracer = None
_propagator = TraceContextTextMapPropagator()

ROUTE_SPANS = (("/api/maestro/v1/mcp/servers", "mcp/servers"), ("/api/maestro/v1/runs/", "mcp/runs"))
# A URL pattern as `/runs/{run_id}/mcp/sessions`: Django converters and DRF's regex groups alike.
_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>|\(\?P<(\w+)>[^)]*\)")
SHUTDOWN_TIMEOUT_MS = 5000


def configure(*, exporter=None) -> None:
    """Install a tracer provider: OTLP/HTTP from the standard env vars, or the given exporter."""
    global _provider, _tracer
    if exporter is None:
        if not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    # Our own exit hooks, not the SDK's atexit one: a forked worker (granian, multiprocessing)
    # ends with os._exit after multiprocessing's finalizers, so atexit alone would never flush it.
    _provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}), shutdown_on_exit=False)
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("maestro-mcp")
    atexit.register(shutdown)
    multiprocessing.util.Finalize(None, shutdown, exitpriority=100)


def shutdown() -> None:
    """Export what is still queued, then stop tracing (idempotent). A door that ends a process
    with os._exit calls it first."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.force_flush(SHUTDOWN_TIMEOUT_MS)
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def span(name: str, *, kind: trace.SpanKind = trace.SpanKind.INTERNAL, traceparent: str | None = None, **attributes):
    """A span when tracing is on (yielded, so attributes known later can be added), and a free
    no-op otherwise (it yields a non-recording span). `traceparent` (W3C) makes it continue the
    caller's trace instead of the current one. A GatewayError leaving it sets `error.type` to its
    code."""
    if _tracer is None:
        return nullcontext(trace.INVALID_SPAN)
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    return _recording_span(name, kind, {k: v for k, v in attributes.items() if v is not None}, parent)


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to pass on (HTTP header, params._meta); None
    when tracing is off."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def _recording_span(name: str, kind: trace.SpanKind, attributes: dict, parent=None):
    with _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        try:
            yield current
        except Exception as exc:
            current.set_attribute("error.type", getattr(exc, "code", None) or type(exc).__qualname__)
            raise


def route_template(route: str) -> str:
    """`api/maestro/v1/runs/<str:run_id>/mcp/sessions` -> `/api/maestro/v1/runs/{run_id}/mcp/sessions`."""
    template = _PARAMETER.sub(lambda m: "{" + (m.group(1) or m.group(2)) + "}", route)
    return "/" + template.replace("^", "").replace("$", "")


class RouteSpanMiddleware:
    """`mcp/servers` and `mcp/runs` SERVER spans around the control-plane routes, with the stable
    HTTP semantic-convention attributes (the route is the URL pattern, never the concrete path)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _tracer is None:
            return self.get_response(request)
        for prefix, name in ROUTE_SPANS:
            if request.path.startswith(prefix):
                with _tracer.start_as_current_span(
                    name, kind=trace.SpanKind.SERVER, attributes={"http.request.method": request.method, "http.route": prefix},
                ) as current:
                    response = self.get_response(request)
                    match = getattr(request, "resolver_match", None)
                    if match is not None and match.route:
                        current.set_attribute("http.route", route_template(match.route))
                    current.set_attribute("http.response.status_code", response.status_code)
                    if response.status_code >= 500:
                        current.set_status(trace.StatusCode.ERROR)
                    return response
        return self.get_response(request)

"""OpenTelemetry traces. Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test installs an
exporter): then the route middleware opens `mcp/servers` and `mcp/runs` spans, and the services
add child spans (invoke, session) with labels. When off, nothing on the hot path touches OTel."""

from __future__ import annotations

from contextlib import nullcontext

from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

_provider: TracerProvider | None = None
_tracer = None

ROUTE_SPANS = (("/api/maestro/v1/mcp/servers", "mcp/servers"), ("/api/maestro/v1/runs/", "mcp/runs"))


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
    _provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("maestro-mcp")


def enabled() -> bool:
    return _tracer is not None


def span(name: str, **attributes):
    """A span when tracing is on; a free no-op context otherwise."""
    if _tracer is None:
        return nullcontext()
    return _tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


class RouteSpanMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if _tracer is None:
            return self.get_response(request)
        for prefix, name in ROUTE_SPANS:
            if request.path.startswith(prefix):
                with _tracer.start_as_current_span(name, attributes={"http.method": request.method, "http.route": prefix}) as current:
                    response = self.get_response(request)
                    current.set_attribute("http.status_code", response.status_code)
                    return response
        return self.get_response(request)

"""Routes. With MAESTRO_MCP_ENABLED=false no MCP route exists at all (404), while health,
readiness, admin and metrics stay: the kill switch removes the surface, it does not guard it."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from maestro import health, prometheus
from sessions_app.operator_views import whoami

handler400 = "maestro.api_errors.json_400"
handler403 = "maestro.api_errors.json_403"
handler404 = "maestro.api_errors.json_404"
handler500 = "maestro.api_errors.json_500"

urlpatterns = [
    path("api/health", health.health, name="health"),
    path("api/ready", health.ready, name="ready"),
    path("admin/", admin.site.urls),
    path("metrics", prometheus.metrics_view, name="prometheus-django-metrics"),
]

if settings.MAESTRO_MCP_ENABLED:
    urlpatterns += [
        path("api/maestro/v1/whoami", whoami, name="whoami"),
        path("api/maestro/v1/", include("sessions_app.urls")),
        path("api/maestro/v1/", include("mcp.api.urls")),
        path("", include("mcp.page_urls")),
        path("api/schema/", SpectacularAPIView.as_view(), name="openapi-schema"),
        path("api/docs/", SpectacularSwaggerView.as_view(url_name="openapi-schema"), name="openapi-docs"),
    ]

"""MCP routes under /api/maestro/v1/ (included only while MAESTRO_MCP_ENABLED). No trailing
slash, like every path in DESIGN section 3. Invoke, a run's tools and session creation with an API
key are answered by the data plane in front of Django (mcp/dataplane/app.py)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from mcp.api import evidence_views
from mcp.api.views import McpServerViewSet

router = SimpleRouter(trailing_slash=False)
router.register("mcp/servers", McpServerViewSet, basename="mcp-server")

urlpatterns: list = [
    *router.urls,
    path("runs/<str:run_id>/mcp/evidence", evidence_views.run_evidence, name="mcp-run-evidence"),
    path("runs/<str:run_id>/mcp/evidence/export", evidence_views.run_evidence_export, name="mcp-run-evidence-export"),
]

"""The operator pages (control plane, Django templates in templates/). Included only while
MAESTRO_MCP_ENABLED, like every MCP route."""

from django.contrib.auth.views import LogoutView
from django.urls import path
from django.views.generic import RedirectView

from mcp.pages import access, registry, studio

urlpatterns: list = [
    path("", RedirectView.as_view(pattern_name="pages-registry"), name="pages-home"),
    path("login", access.SignInView.as_view(), name="pages-login"),
    path("logout", LogoutView.as_view(next_page="pages-login"), name="pages-logout"),
    path("mcp/registry", registry.server_list, name="pages-registry"),
    # "_health": server names start with a letter or digit, so no server can shadow it.
    path("mcp/registry/_health", registry.health_poll, name="pages-registry-health"),
    path("mcp/registry/<str:ref>", registry.server_detail, name="pages-server"),
    path("mcp/registry/<str:ref>/<str:action>", registry.server_action, name="pages-server-action"),
    path("studio/runs", studio.run_index, name="pages-runs"),
    path("studio/runs/<str:run_id>", studio.run_detail, name="pages-run"),
    path("studio/runs/<str:run_id>/live", studio.run_live, name="pages-run-live"),
    path("studio/runs/<str:run_id>/verify", studio.run_reverify, name="pages-run-verify"),
    path("studio/runs/<str:run_id>/evidence.jsonl", studio.evidence_export, name="pages-run-export"),
    path("studio/runs/<str:run_id>/evidence/<int:seq>", studio.evidence_row, name="pages-evidence-row"),
    path("studio/runs/<str:run_id>/sessions/<str:sid>/revoke", studio.session_revoke_page, name="pages-session-revoke"),
]

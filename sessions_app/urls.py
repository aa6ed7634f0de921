from django.urls import path

from sessions_app import api

urlpatterns = [
    path("runs/<str:run_id>/mcp/sessions", api.RunSessionsView.as_view(), name="mcp-run-sessions"),
    path("runs/<str:run_id>/mcp/sessions/<str:sid>", api.RunSessionView.as_view(), name="mcp-run-session"),
]

from __future__ import annotations

from django.db import models


class ApiKey(models.Model):
    """An operator credential. Only a SHA-256 digest of the key is stored; the key itself is shown
    once at creation. `prefix` is the public, recognisable part used to find the row."""

    name = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.BooleanField(default=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (mcpk_{self.prefix}_…)"


class McpSession(models.Model):
    """The durable record of a run's session, written only with MCP_SESSIONS_PERSIST=true.

    The token carries everything verification needs; this row exists so that a revocation
    survives the loss of Redis (see docs/sessions.md) and so operators can list and audit sessions.
    `created_at` is the token's `iat` and `expires_at` its `exp`, so row and token always agree.
    """

    sid = models.CharField(primary_key=True, max_length=32, editable=False)
    run_id = models.CharField(max_length=128)
    scopes = models.JSONField(default=list)
    servers = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=160)

    class Meta:
        db_table = "mcp_sessions"
        ordering = ["-created_at", "sid"]
        verbose_name = "MCP session"
        indexes = [
            models.Index(fields=["run_id", "-created_at"], name="mcp_sessions_run_idx"),
            # The cleanup deletes by expiry.
            models.Index(fields=["expires_at"], name="mcp_sessions_expiry_idx"),
            # Re-seeding revocations after a Redis flush reads only revoked rows.
            models.Index(fields=["expires_at"], name="mcp_sessions_revoked_idx", condition=models.Q(revoked_at__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.sid} (run {self.run_id})"

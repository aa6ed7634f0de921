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

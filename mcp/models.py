"""The registry of upstream MCP servers.

Field rules live here as validators so the API serializer and the admin form enforce the same
ones. Upstream auth headers are stored only encrypted (`mcp.secrets`) and are write-only: no
serializer, admin page or log line ever shows their values.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,63})$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
SCOPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,63}$")
GLOB_RE = re.compile(r"^[A-Za-z0-9_.*?\[\]!/:-]{1,128}$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$")
HEADER_VALUE_RE = re.compile(r"^[\x20-\x7E\t]{0,4096}$")

URL_MAX = 2048
DESCRIPTION_MAX = 2000
MAX_TAGS = 16
MAX_SCOPES = 16
MAX_GLOBS = 64
MAX_HEADERS = 16
TIMEOUT_MIN_MS = 100
TIMEOUT_MAX_MS = 120_000


def validate_name(value: str) -> None:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ValidationError("use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
    try:
        uuid.UUID(value)
    except ValueError:
        return
    raise ValidationError("a name cannot be a UUID (servers are looked up by id or name)")


def validate_url(value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > URL_MAX:
        raise ValidationError(f"give an http or https URL of at most {URL_MAX} characters")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValidationError("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise ValidationError("the URL is malformed") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("only http and https URLs are allowed")
    if not parts.hostname:
        raise ValidationError("the URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError("credentials in the URL are not allowed: use auth_headers")
    if parts.fragment:
        raise ValidationError("the URL may not have a #fragment")
    del port


def _string_list(value, *, pattern: re.Pattern, limit: int, what: str) -> None:
    if not isinstance(value, list):
        raise ValidationError(f"give a list of {what}")
    if len(value) > limit:
        raise ValidationError(f"at most {limit} {what}")
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise ValidationError(f"{item!r} is not a valid entry: {what} match {pattern.pattern}")
    if len(set(value)) != len(value):
        raise ValidationError(f"{what} must not repeat")


def validate_tags(value) -> None:
    _string_list(value, pattern=TAG_RE, limit=MAX_TAGS, what="tags (lowercase, up to 32 characters)")


def validate_scopes(value) -> None:
    _string_list(value, pattern=SCOPE_RE, limit=MAX_SCOPES, what="scopes")


def validate_globs(value) -> None:
    _string_list(value, pattern=GLOB_RE, limit=MAX_GLOBS, what="tool name patterns")


def validate_headers(value) -> None:
    from mcp.upstream.protocol import H_PARAM_PREFIX, RESERVED_HEADERS

    if not isinstance(value, dict):
        raise ValidationError("give an object of header names to values")
    if len(value) > MAX_HEADERS:
        raise ValidationError(f"at most {MAX_HEADERS} headers")
    seen: set[str] = set()
    for name, header_value in value.items():
        if not isinstance(name, str) or not HEADER_NAME_RE.fullmatch(name):
            raise ValidationError("header names must be HTTP tokens (letters, digits, '-', ...) of at most 64 characters")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith(H_PARAM_PREFIX.lower()):
            raise ValidationError(f"header {name!r} is set by the gateway itself")
        if lowered in seen:
            raise ValidationError(f"header {name!r} is given twice")
        seen.add(lowered)
        # The value is a secret: the message never repeats it.
        if not isinstance(header_value, str) or not HEADER_VALUE_RE.fullmatch(header_value):
            raise ValidationError(f"the value of header {name!r} must be printable ASCII text of at most 4096 characters")


class McpServer(models.Model):
    class Health(models.TextChoices):
        UNKNOWN = "unknown"
        HEALTHY = "healthy"
        UNHEALTHY = "unhealthy"
        UNREACHABLE = "unreachable"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64, unique=True, validators=[validate_name])
    url = models.CharField("URL", max_length=URL_MAX, validators=[validate_url])
    description = models.TextField(blank=True, default="", max_length=DESCRIPTION_MAX)
    scopes = models.JSONField(default=list, blank=True, validators=[validate_scopes], help_text="Scopes a session must hold to use this server.")
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    # "|a|b|": tags as text, so "has tag t" is a portable LIKE on SQLite and PostgreSQL alike.
    tag_index = models.CharField(max_length=MAX_TAGS * 34 + 2, default="", editable=False, db_index=True)
    enabled = models.BooleanField(default=True)
    timeout_ms = models.PositiveIntegerField(default=10_000, validators=[MinValueValidator(TIMEOUT_MIN_MS), MaxValueValidator(TIMEOUT_MAX_MS)])
    auth_headers_encrypted = models.TextField(blank=True, default="", editable=False)
    auth_header_names = models.JSONField(default=list, blank=True, editable=False)
    tool_allow = models.JSONField(default=list, blank=True, validators=[validate_globs], help_text="Glob patterns; empty allows every tool.")
    tool_deny = models.JSONField(default=list, blank=True, validators=[validate_globs], help_text="Glob patterns; a deny wins over an allow.")

    health_status = models.CharField(max_length=16, choices=Health.choices, default=Health.UNKNOWN, editable=False)
    health_latency_ms = models.FloatField(null=True, blank=True, editable=False)
    health_protocol_version = models.CharField(max_length=32, blank=True, default="", editable=False)
    health_server_info = models.JSONField(default=dict, blank=True, editable=False)
    health_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    health_error_code = models.CharField(max_length=64, blank=True, default="", editable=False)
    health_error = models.CharField(max_length=500, blank=True, default="", editable=False)

    tools_cache = models.JSONField(null=True, blank=True, editable=False)
    tools_fetched_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        db_table = "mcp_servers"
        indexes = [models.Index(fields=["enabled", "name"])]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<McpServer {self.name} {self.url}>"

    def save(self, *args, **kwargs):
        self.tag_index = "|" + "|".join(self.tags or []) + "|" if self.tags else ""
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "tags" in update_fields:
            kwargs["update_fields"] = {*update_fields, "tag_index"}
        super().save(*args, **kwargs)

    @property
    def has_auth_headers(self) -> bool:
        return bool(self.auth_headers_encrypted)



class Invocation(models.Model):
    """Evidence: one row per invocation attempt after authentication, hash-chained per run
    (see mcp.services.evidence). Not foreign-keyed to servers or sessions: evidence must outlive
    both, so it copies what it needs."""

    STATUS_CHOICES = [("success", "success"), ("error", "error"), ("denied", "denied")]
    KIND_CHOICES = [("tool", "tool"), ("resource", "resource"), ("prompt", "prompt")]

    id = models.UUIDField(primary_key=True, editable=False)
    run_id = models.CharField(max_length=128)
    seq = models.PositiveBigIntegerField()
    session_id = models.CharField(max_length=64)
    server_id = models.CharField(max_length=64, blank=True)
    server_name = models.CharField(max_length=64, blank=True)
    # The tool's name; for a resource read its URI, for a prompt its name (`kind` says which).
    tool = models.CharField(max_length=2048)
    arguments_digest = models.CharField(max_length=64)
    result_digest = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=8, choices=STATUS_CHOICES)
    error_code = models.CharField(max_length=64, blank=True)
    is_error = models.BooleanField(default=False)
    latency_us = models.BigIntegerField()
    receipt = models.TextField(blank=True)
    transport = models.CharField(max_length=8)
    # tool | resource | prompt. db_default: rows written without it (older writers, COPY) are tools.
    kind = models.CharField(max_length=8, choices=KIND_CHOICES, default="tool", db_default="tool")
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        db_table = "mcp_invocations"
        constraints = [models.UniqueConstraint(fields=["run_id", "seq"], name="mcp_invocation_run_seq_unique")]
        indexes = [models.Index(fields=["server_name", "created_at"]), models.Index(fields=["status", "created_at"])]
        verbose_name = "invocation (evidence)"
        verbose_name_plural = "invocations (evidence)"

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.server_name}/{self.tool} {self.status}"


class EvidenceChain(models.Model):
    """How far one run's evidence chain has been verified (mcp.services.evidence_chain), so a page
    or an API call hashes only the rows added since, never the whole chain again. Also the run's
    summary for the run index: counts by status, and the servers and tools its calls named."""

    run_id = models.CharField(primary_key=True, max_length=128)
    verified_seq = models.PositiveBigIntegerField(default=0)  # rows 1..verified_seq verified; 0: none yet
    verified_hash = models.CharField(max_length=64, blank=True, default="")  # the hash of row verified_seq
    verified_at = models.DateTimeField(null=True, blank=True)  # when verification last moved on
    # When the last walk from #1 began: an edit made before it would have been found.
    full_check_at = models.DateTimeField(null=True, blank=True)
    # A walk from #1 over the verified rows in progress (periodic, or asked for): how far it got.
    recheck_seq = models.PositiveBigIntegerField(null=True, blank=True)
    recheck_hash = models.CharField(max_length=64, blank=True, default="")
    recheck_started_at = models.DateTimeField(null=True, blank=True)
    broken_seq = models.PositiveBigIntegerField(null=True, blank=True)
    broken_reason = models.CharField(max_length=200, blank=True, default="")
    successes = models.PositiveBigIntegerField(default=0)  # among the verified rows
    errors = models.PositiveBigIntegerField(default=0)
    denials = models.PositiveBigIntegerField(default=0)
    servers = models.JSONField(default=list, blank=True)  # names seen in verified rows (bounded)
    tools = models.JSONField(default=list, blank=True)
    last_call_at = models.DateTimeField(null=True, blank=True)  # the newest call seen, verified or not

    class Meta:
        db_table = "mcp_evidence_chains"
        indexes = [models.Index(fields=["-last_call_at"], name="mcp_evidence_chain_recent_idx")]
        verbose_name = "evidence chain"

    def __str__(self) -> str:
        return f"{self.run_id} verified through #{self.verified_seq}"

"""Presentation for the operator pages: times in UTC with a relative hint, hosts, short ids,
readable JSON, the health badge's words (shared by the page and its poll, so both say the same)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import urlsplit

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def utc(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter
def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = int(((now or timezone.now()) - moment).total_seconds())
    if abs(seconds) < 5:
        return "just now"
    span = f"{abs(seconds)} s"
    for size, unit in ((86_400, "d"), (3600, "h"), (60, "min")):
        if abs(seconds) >= size:
            span = f"{abs(seconds) // size} {unit}"
            break
    return f"{span} ago" if seconds > 0 else f"in {span}"


@register.filter
def when(moment: datetime | None):
    """`<time>` in UTC, with how long ago as a hint."""
    if moment is None:
        return "—"
    return format_html('<time datetime="{}">{}</time> <small class="muted">{}</small>', moment.isoformat(), utc(moment), ago(moment))


@register.filter
def host(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


@register.filter
def short(value: str) -> str:
    return str(value)[:8]


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def ms(latency_us: int | None) -> str:
    return "—" if latency_us is None else f"{latency_us / 1000:.1f} ms"


def health_words(*, status: str, latency_ms: float | None, checked_at: datetime | None, error: str) -> dict:
    """What the registry shows of a server's last health check: badge, detail line, hover text."""
    detail = []
    if status == "healthy" and latency_ms is not None:
        detail.append(f"{latency_ms:.0f} ms")
    detail.append(f"checked {ago(checked_at)}" if checked_at else "not checked yet")
    title = f"checked {utc(checked_at)}" if checked_at else "no health check has run"
    if error:
        title += f": {error}"
    return {"status": status, "detail": " · ".join(detail), "title": title}


@register.inclusion_tag("pages/health_badge.html")
def health_badge(server) -> dict:
    words = health_words(status=server.health_status, latency_ms=server.health_latency_ms, checked_at=server.health_checked_at, error=server.health_error)
    return {"id": str(server.pk), **words}


CHAIN_WORDS = {
    "valid": "chain verified through #{verified}",
    "pending": "chain verified through #{verified} of {head} (verifying)",
    "broken": "chain broken at #{broken}",
}


def chain_words(status) -> dict:
    """The chain badge: its state, its words, and what exactly was checked when."""
    if status.head_seq == 0 and status.state != "broken":
        return {"state": "valid", "label": "no calls yet", "title": "nothing to verify"}
    label = CHAIN_WORDS[status.state].format(verified=status.verified_seq, head=status.head_seq, broken=status.broken_seq)
    if status.state == "broken":
        title = status.reason
    else:
        title = f"rows #1–#{status.verified_seq} hashed and linked"
        if status.full_check_at:
            title += f"; last full check from #1 started {utc(status.full_check_at)}"
        title += "; newer rows and the rows on screen are checked on every view"
    return {"state": status.state, "label": label, "title": title}


@register.inclusion_tag("pages/chain_badge.html")
def chain_badge(status) -> dict:
    return chain_words(status)

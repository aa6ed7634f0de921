"""Periodic session jobs, scheduled by CELERY_BEAT_SCHEDULE in maestro/settings.py."""

from celery import shared_task

from sessions_app.services import sessions_cleanup_expired


@shared_task(name="sessions_app.tasks.cleanup_expired_sessions", ignore_result=True)
def cleanup_expired_sessions() -> int:
    """Delete expired sessions (rows, run-index entries, revocation keys) and end their upstream
    sessions through `services.on_session_end`; with persistence on, also re-publish durable
    revocations to Redis (repairing any whose publication failed)."""
    return sessions_cleanup_expired()

"""Celery app. The broker is CELERY_BROKER_URL, else REDIS_URL, else a filesystem broker in ./data
(the embedded default), so the periodic jobs run under `make run` with no external service."""

from maestro.config import load_settings_or_exit

load_settings_or_exit()

from celery import Celery  # noqa: E402

app = Celery("maestro")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

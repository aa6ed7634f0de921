"""gunicorn settings for the web door. Configuration is validated in the master, before forking,
so a missing SESSION_SECRET is one line and an exit, not a worker crash loop."""

from maestro.config import load_settings_or_exit

load_settings_or_exit()

from maestro import settings  # noqa: E402

bind = settings.HTTP_BIND
worker_class = "gthread"
workers = settings.HTTP_WORKERS
threads = settings.HTTP_THREADS
timeout = 120
graceful_timeout = 20
keepalive = 30
accesslog = None

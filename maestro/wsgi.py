"""Django's WSGI application: the control plane. In the deployed web door it runs behind the data
plane (maestro/asgi.py) on a thread pool; served on its own it has every route but the data plane's
fast answers (its views for those are absent)."""

from maestro.config import load_settings_or_exit

load_settings_or_exit()

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

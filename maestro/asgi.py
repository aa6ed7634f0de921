"""The web door's application (served by granian: maestro/web.py): the data plane in front, Django
behind it. DESIGN section 1; mcp/dataplane/app.py says which routes the data plane answers."""

from maestro.config import load_settings_or_exit

load_settings_or_exit()

from a2wsgi import WSGIMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402

from maestro.wsgi import application as django_application  # noqa: E402
from mcp.dataplane.app import DataPlane  # noqa: E402

# Django is synchronous: its requests run on a bounded pool of threads (a WSGI app behind the
# loop; Django's own ASGI handler would run every view on one thread per process).
application = DataPlane(WSGIMiddleware(django_application, workers=settings.HTTP_THREADS))

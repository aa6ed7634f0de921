import os

from maestro.config import load_settings_or_exit

load_settings_or_exit()

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django_application = get_wsgi_application()

# Granian copies the whole process environment into every request's environ (PEP 3333 allows
# it), so request.META would carry SESSION_SECRET, DATABASE_URL and the rest to anything that
# reads or reports it. Only the request's own CGI and HTTP variables are kept.
_PROCESS_ONLY = frozenset(key for key in os.environ if not key.startswith("HTTP_")) - {
    "CONTENT_LENGTH", "CONTENT_TYPE", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "REQUEST_METHOD", "SCRIPT_NAME",
    "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "GATEWAY_INTERFACE", "SERVER_SOFTWARE",
}


def _without_process_environment(app):
    def application(environ, start_response):
        for key in _PROCESS_ONLY.intersection(environ):
            del environ[key]
        return app(environ, start_response)

    return application


served = django_application
if settings.MAESTRO_MCP_ENABLED:
    # The hot route skips Django's middleware stack (see mcp.api.invoke_wsgi for what it keeps).
    from mcp.api.invoke_wsgi import InvokeFastPath

    served = InvokeFastPath(django_application)
application = _without_process_environment(served)

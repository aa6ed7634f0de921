from maestro.config import load_settings_or_exit

load_settings_or_exit()

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()

if settings.MAESTRO_MCP_ENABLED:
    # The hot route skips Django's middleware stack (see mcp.api.invoke_wsgi for what it keeps).
    from mcp.api.invoke_wsgi import InvokeFastPath

    application = InvokeFastPath(application)

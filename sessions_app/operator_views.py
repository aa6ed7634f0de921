from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.response import Response

from sessions_app.principals import operator_for


WHOAMI_SCHEMA = {
    "type": "object",
    "properties": {"operator": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string"}}, "admin": {"type": "boolean"}},
    "required": ["operator", "scopes", "admin"],
}


@extend_schema(operation_id="whoami", tags=["operators"], responses={200: WHOAMI_SCHEMA})
@api_view(["GET"])
def whoami(request):
    """Which operator a credential is, and what it may do: the first smoke step for a new key."""
    operator = operator_for(request.user)
    return Response({"operator": operator.name, "scopes": sorted(operator.scopes), "admin": operator.is_admin})

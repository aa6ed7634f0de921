from __future__ import annotations

from dataclasses import dataclass

from sessions_app import scopes as S


@dataclass(frozen=True)
class Operator:
    """Who is calling the management API or the pages: an API key, a Django staff login (the
    ADMIN role), or a Django login whose groups are named after operator scopes."""

    name: str
    scopes: frozenset[str]
    is_admin: bool = False
    api_key_id: int | None = None

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False

    def has_scope(self, scope: str) -> bool:
        return self.is_admin or S.ADMIN in self.scopes or scope in self.scopes

    def has_any_operator_scope(self) -> bool:
        return self.is_admin or bool(self.scopes & S.OPERATOR_SCOPES)


_CACHED = "_maestro_operator"


def operator_for(user) -> Operator | None:
    """The operator behind a request's user. Staff (and superusers) are the ADMIN role; another
    active login holds the operator scopes its Django groups are named after (`mcp:read`,
    `mcp:sessions`, `admin:mcp`), so a read-only on-call account needs no staff flag. The group
    look-up is one query, remembered on the user object for the rest of the request."""
    if isinstance(user, Operator):
        return user
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", False):
        return None
    cached = getattr(user, _CACHED, None)
    if cached is not None:
        return cached or None
    if user.is_staff or user.is_superuser:
        operator = Operator(name=f"user:{user.get_username()}", scopes=frozenset(S.OPERATOR_SCOPES), is_admin=True)
    else:
        granted = frozenset(user.groups.filter(name__in=S.OPERATOR_SCOPES).values_list("name", flat=True))
        operator = Operator(name=f"user:{user.get_username()}", scopes=granted) if granted else None
    setattr(user, _CACHED, operator or False)
    return operator

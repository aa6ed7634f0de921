from __future__ import annotations

from dataclasses import dataclass

from sessions_app import scopes as S


@dataclass(frozen=True)
class Operator:
    """Who is calling the management API: an API key, or a Django staff login (the ADMIN role)."""

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


def operator_for(user) -> Operator | None:
    if isinstance(user, Operator):
        return user
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_active", False) and user.is_staff:
        return Operator(name=f"user:{user.get_username()}", scopes=frozenset(S.OPERATOR_SCOPES), is_admin=True)
    return None

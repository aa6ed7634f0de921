"""A Django login's operator scopes come from groups named after them, so a read-only on-call
account signs in to the pages without the staff flag, and the API applies the same rules to it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from sessions_app.principals import operator_for

pytestmark = pytest.mark.django_db
WHOAMI = "/api/maestro/v1/whoami"
SERVERS = "/api/maestro/v1/mcp/servers"


def user_in(django_user_model, *groups: str, name: str = "carol", **fields):
    user = django_user_model.objects.create_user(name, password="pw-carol-12345", **fields)
    for group in groups:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def test_groups_named_after_operator_scopes_grant_those_scopes(django_user_model):
    user = user_in(django_user_model, "mcp:read", "mcp:sessions", "marketing")
    operator = operator_for(user)
    assert operator.scopes == {"mcp:read", "mcp:sessions"} and not operator.is_admin
    assert operator.has_scope("mcp:sessions") and not operator.has_scope("admin:mcp")


def test_an_admin_mcp_group_implies_every_operator_scope(django_user_model):
    operator = operator_for(user_in(django_user_model, "admin:mcp"))
    assert operator.has_scope("mcp:sessions") and operator.has_scope("admin:mcp") and not operator.is_admin


@pytest.mark.parametrize("fields", [{"is_staff": True}, {"is_superuser": True}])
def test_staff_and_superusers_are_the_admin_role(django_user_model, fields):
    assert operator_for(user_in(django_user_model, **fields)).is_admin


@pytest.mark.parametrize("groups, fields", [((), {}), (("marketing",), {}), (("mcp:read",), {"is_active": False})])
def test_no_operator_group_or_an_inactive_account_is_no_operator(django_user_model, groups, fields):
    assert operator_for(user_in(django_user_model, *groups, **fields)) is None


def test_the_group_look_up_is_one_query_per_request(django_user_model, django_assert_num_queries):
    user = user_in(django_user_model, "mcp:read")
    with django_assert_num_queries(1):
        operator_for(user)
        operator_for(user)


def test_the_api_applies_the_same_rules_to_a_group_login(api, django_user_model):
    # Given a read-only on-call login (no staff flag)
    api.force_login(user_in(django_user_model, "mcp:read"))
    # Then it reads, but may not write
    assert api.get(WHOAMI).json() == {"operator": "user:carol", "scopes": ["mcp:read"], "admin": False}
    assert api.get(SERVERS).status_code == 200
    refused = api.post(SERVERS, {"name": "x", "url": "http://127.0.0.1:1/mcp"}, format="json")
    assert refused.status_code == 403 and "admin:mcp" in refused.json()["error"]["message"]

import pytest
from django.db.backends.base.operations import BaseDatabaseOperations

from policies.choices import Role
from policies.db_guards import allow_delete
from tests.factories import (
    EnvironmentFactory,
    MembershipFactory,
    NamespaceOwnershipFactory,
    TeamFactory,
    UserFactory,
    make_policy,
)

pytest_plugins = [
    "tests.fixtures.meshsim",
    "tests.fixtures.prometheus",
    "tests.fixtures.worker",
    "tests.fixtures.browser",
    "tests.integrations.notify.receiver",
]


_flush = BaseDatabaseOperations.execute_sql_flush


def _flush_allowing_deletes(self, sql_list):
    """Transactional tests empty every table between tests: SQLite's DELETE guard lets only that through."""
    with allow_delete():
        return _flush(self, sql_list)


BaseDatabaseOperations.execute_sql_flush = _flush_allowing_deletes


@pytest.fixture
def org(db):
    """Two teams owning one namespace each in one environment, with an author, an approver,
    a user of the other team, a security-team member and a user in no team."""

    class Org:
        pass

    o = Org()
    o.env = EnvironmentFactory(name="staging", order=10)
    o.team_a = TeamFactory(slug="bookinfo", name="Bookinfo")
    o.team_b = TeamFactory(slug="shop", name="Shop")
    o.security = TeamFactory(slug="security", name="Security", is_security=True)
    NamespaceOwnershipFactory(environment=o.env, namespace="bookinfo", team=o.team_a)
    NamespaceOwnershipFactory(environment=o.env, namespace="shop", team=o.team_b)
    o.author = UserFactory(username="alice")
    o.approver = UserFactory(username="bob")
    o.other = UserFactory(username="carol")
    o.sec = UserFactory(username="sam")
    o.outsider = UserFactory(username="nobody")
    MembershipFactory(team=o.team_a, user=o.author, role=Role.AUTHOR)
    MembershipFactory(team=o.team_a, user=o.approver, role=Role.APPROVER)
    MembershipFactory(team=o.team_b, user=o.other, role=Role.AUTHOR)
    MembershipFactory(team=o.security, user=o.sec, role=Role.APPROVER)
    o.policy_a = make_policy(environment=o.env, namespace="bookinfo", name="reviews")
    o.policy_b = make_policy(environment=o.env, namespace="shop", name="payments")
    return o

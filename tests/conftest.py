import os

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
    "tests.fixtures.oidc_provider",
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


# Fixtures through which a test touches the database or the broker (directly or through another
# fixture: `item.fixturenames` is the whole closure).
_STORAGE_FIXTURES = {"db", "transactional_db", "django_db_setup", "live_server", "celery_worker_process"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With MESHGATE_TESTS=storage, only the tests that touch the database or the broker run: CI's
    second pass (the embedded default) repeats those and not the ones whose outcome cannot differ."""

    if os.environ.get("MESHGATE_TESTS") != "storage":
        return
    kept, skipped = [], []
    for item in items:
        uses_storage = (
            bool(_STORAGE_FIXTURES & set(getattr(item, "fixturenames", ())))
            or item.get_closest_marker("django_db") is not None
        )
        (kept if uses_storage else skipped).append(item)
    items[:] = kept
    config.hook.pytest_deselected(items=skipped)

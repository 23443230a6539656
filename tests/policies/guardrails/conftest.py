import pytest

from policies.choices import Role
from policies.services.guardrails import guardrails_seed_builtins
from tests.factories import EnvironmentFactory, MembershipFactory, TeamFactory, UserFactory, grant_platform_admin


@pytest.fixture
def builtins(db):
    """The built-in rows (the migration creates them, but transactional tests elsewhere flush tables)."""
    guardrails_seed_builtins()


@pytest.fixture
def admin_user(db):
    user = UserFactory(username="ada")
    MembershipFactory(team=TeamFactory(slug="platform"), user=user, role=Role.ADMIN)
    return grant_platform_admin(user)


@pytest.fixture
def prod(db):
    return EnvironmentFactory(name="prod", is_production=True, order=100)


@pytest.fixture
def staging(db):
    return EnvironmentFactory(name="staging", is_production=False, order=10)


@pytest.fixture
def no_guardrails(db):
    """Only the guardrails a test creates itself (the migration seeds the built-ins)."""
    from policies.models import Guardrail

    Guardrail.objects.all().delete()

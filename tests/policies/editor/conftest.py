import pytest
from django.core.cache import cache

from policies.models import Environment
from policies.services.imports import environment_import
from policies.validation.cache import clear_memory


@pytest.fixture(autouse=True)
def _fresh_caches():
    """Schemas and live inventories are cached per environment id, and ids are reused after a rollback."""
    cache.clear()
    clear_memory()
    yield
    cache.clear()
    clear_memory()


@pytest.fixture
def staging(org, meshsim) -> Environment:
    """The org's staging environment on the meshsim demo mesh, its Istio objects imported."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    environment_import(environment=org.env)
    return org.env

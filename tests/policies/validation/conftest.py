import textwrap
from collections.abc import Callable

import pytest
from django.core.cache import cache

from policies.models import Environment
from policies.services.imports import environment_import
from policies.validation import ValidationReport, validate_text
from policies.validation.cache import clear_memory
from tests.factories import EnvironmentFactory

Validate = Callable[..., ValidationReport]


@pytest.fixture(autouse=True)
def _fresh_schema_cache():
    """Schemas are cached per environment id, and ids are reused after a rollback."""
    cache.clear()
    clear_memory()
    yield
    cache.clear()
    clear_memory()


@pytest.fixture
def staging(db, meshsim) -> Environment:
    """The staging environment on the meshsim demo mesh, its Istio objects imported as policies."""
    environment = EnvironmentFactory(name="staging", api_url=meshsim.url)
    environment_import(environment=environment)
    return environment


@pytest.fixture
def validate(staging) -> Validate:
    """Validate a (dedented) YAML text in the staging environment."""

    def run(text: str, **options) -> ValidationReport:
        return validate_text(environment=staging, text=textwrap.dedent(text), **options)

    return run

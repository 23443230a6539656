import pytest

from policies.services.imports import environment_import


@pytest.fixture
def ro(org, meshsim):
    """The `org` on the simulated staging cluster, imported (policies with their revisions)."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    org.meshsim = meshsim
    environment_import(environment=org.env)
    return org

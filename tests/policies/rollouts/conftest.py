import time

import pytest

from integrations.prometheus import query
from policies.services.imports import environment_import


@pytest.fixture
def ro(org, meshsim):
    """The `org` on the simulated staging cluster, imported (policies with their revisions)."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    org.meshsim = meshsim
    environment_import(environment=org.env)
    return org


@pytest.fixture
def ro_live(org, meshsim_traffic, prometheus_traffic):
    """The `org` on a staging meshsim whose traffic runs in real time, with a Prometheus scraping it."""
    org.env.api_url, org.env.prometheus_url = meshsim_traffic.url, prometheus_traffic.url
    org.env.save(update_fields=["api_url", "prometheus_url"])
    environment_import(environment=org.env)
    prometheus_traffic.wait_for_target_up()
    deadline = time.monotonic() + 60
    while not query(prometheus_traffic.url, 'increase(istio_requests_total{destination_app="ratings"}[3s]) > 0'):
        assert time.monotonic() < deadline, "no ratings traffic in Prometheus after 60 s"
        time.sleep(0.5)
    org.meshsim = meshsim_traffic
    return org

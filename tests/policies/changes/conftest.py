"""Fixtures for the change-request tests: the `org` on the simulated staging cluster."""

from tests.policies.changes.helpers import cluster_org  # noqa: F401 - fixture

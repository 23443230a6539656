"""The demo the run command loads: both environments imported through the client, idempotently."""
import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from policies.models import AuditEvent, Environment, Policy, PolicyRevision
from policies.selectors import policy_list
from policies.services.audit import audit_verify_chain


@pytest.fixture
def seeded(db, meshsim, meshsim_prod):
    call_command("seed_demo", "--staging-url", meshsim.url, "--prod-url", meshsim_prod.url)


def test_demo_environments_teams_and_logins(seeded):
    assert list(Environment.objects.values_list("name", "is_production")) == [("staging", False), ("prod", True)]
    for username in ("alice", "bob", "carol", "dan", "sam", "ada"):
        assert authenticate(username=username, password="meshgate-demo") is not None, username


def test_demo_policies_of_both_environments_are_imported(seeded):
    for env in ("staging", "prod"):
        kinds = set(Policy.objects.filter(environment__name=env).values_list("kind", flat=True))
        assert {"VirtualService", "DestinationRule", "Gateway", "AuthorizationPolicy", "PeerAuthentication"} <= kinds
    alice = authenticate(username="alice", password="meshgate-demo")
    assert {p.namespace for p in policy_list(user=alice)} == {"bookinfo"}
    assert audit_verify_chain().ok


def test_seeding_again_changes_nothing(seeded, meshsim, meshsim_prod):
    revisions, events = PolicyRevision.objects.count(), AuditEvent.objects.count()
    call_command("seed_demo", "--staging-url", meshsim.url, "--prod-url", meshsim_prod.url)
    assert PolicyRevision.objects.count() == revisions
    assert AuditEvent.objects.count() == events

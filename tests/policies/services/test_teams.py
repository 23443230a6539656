"""A team's members, managed by its admins: roles, removal, and what stays out of their reach."""

import pytest
from django.core.exceptions import ValidationError

from policies.choices import MembershipSource, Role
from policies.exceptions import PermissionDeniedError
from policies.models import AuditEvent, Membership
from policies.services.service_accounts import service_account_create
from policies.services.teams import team_member_remove, team_member_save
from tests.factories import MembershipFactory, UserFactory, grant_platform_admin


@pytest.fixture
def tara(org):
    user = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=user, role=Role.ADMIN)
    return user


def roles(team):
    return dict(team.memberships.values_list("user__username", "role"))


def test_a_team_admin_adds_promotes_and_removes_members_audited(org, tara):
    team_member_save(actor=tara, team=org.team_a, username="nobody", role=Role.AUTHOR)
    team_member_save(actor=tara, team=org.team_a, username="nobody", role=Role.APPROVER)
    team_member_remove(actor=tara, team=org.team_a, username="alice")
    assert roles(org.team_a) == {"bob": "approver", "tara": "admin", "nobody": "approver"}
    events = AuditEvent.objects.filter(object_type="policies.Team").order_by("sequence")
    assert [(e.action, e.actor_name, e.before, e.after) for e in events] == [
        ("team.member_set", "tara", None, {"user": "nobody", "role": "author"}),
        ("team.member_set", "tara", {"user": "nobody", "role": "author"}, {"user": "nobody", "role": "approver"}),
        ("team.member_removed", "tara", {"user": "alice", "role": "author"}, None),
    ]


def test_only_the_teams_admins_and_platform_admins(org, tara):
    sven = UserFactory(username="sven")
    MembershipFactory(team=org.team_b, user=sven, role=Role.ADMIN)
    for actor in (sven, org.approver, org.author, org.outsider, org.sec):
        with pytest.raises(PermissionDeniedError, match="only admins of team Bookinfo"):
            team_member_save(actor=actor, team=org.team_a, username="nobody", role=Role.ADMIN)
        with pytest.raises(PermissionDeniedError):
            team_member_remove(actor=actor, team=org.team_a, username="alice")
    assert roles(org.team_a) == {"alice": "author", "bob": "approver", "tara": "admin"}
    pia = grant_platform_admin(UserFactory(username="pia"))
    team_member_save(actor=pia, team=org.team_b, username="nobody", role=Role.ADMIN)
    assert roles(org.team_b)["nobody"] == "admin"


def test_a_team_keeps_an_admin(org, tara):
    with pytest.raises(ValidationError, match="tara is the last admin of team Bookinfo"):
        team_member_save(actor=tara, team=org.team_a, username="tara", role=Role.APPROVER)
    with pytest.raises(ValidationError, match="last admin"):
        team_member_remove(actor=tara, team=org.team_a, username="tara")
    team_member_save(actor=tara, team=org.team_a, username="bob", role=Role.ADMIN)
    team_member_remove(actor=tara, team=org.team_a, username="tara")
    assert roles(org.team_a) == {"alice": "author", "bob": "admin"}


def test_bad_input_is_refused_and_writes_nothing(org, tara):
    inactive = UserFactory(username="gone", is_active=False)
    account = service_account_create(actor=tara, team=org.team_a, name="ci", role=Role.AUTHOR)
    MembershipFactory(
        team=org.team_a, user=UserFactory(username="ssouser"), role=Role.AUTHOR, source=MembershipSource.SSO
    )
    cases = [
        ({"username": "nobody", "role": "owner"}, "'owner' is not a role"),
        ({"username": "ghost", "role": Role.AUTHOR}, "no user is named 'ghost'"),
        ({"username": inactive.username, "role": Role.AUTHOR}, "gone is deactivated"),
        ({"username": account.name, "role": Role.ADMIN}, "is a service account"),
        ({"username": "ssouser", "role": Role.ADMIN}, "comes from the identity provider's groups"),
    ]
    before = list(Membership.objects.order_by("pk").values_list("team", "user", "role"))
    events = AuditEvent.objects.count()
    for params, reason in cases:
        with pytest.raises(ValidationError, match=reason):
            team_member_save(actor=tara, team=org.team_a, **params)
    for username, reason in [
        ("ssouser", "identity provider"),
        (account.name, "service account"),
        ("carol", "not a member"),
    ]:
        with pytest.raises(ValidationError, match=reason):
            team_member_remove(actor=tara, team=org.team_a, username=username)
    assert list(Membership.objects.order_by("pk").values_list("team", "user", "role")) == before
    assert AuditEvent.objects.count() == events

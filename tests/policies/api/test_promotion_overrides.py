"""The API of a policy's per-environment promotion overrides: who may change them, what is refused
(with the field at fault), the audit row of every write, and the override carried by a promotion."""

from __future__ import annotations

import pytest

from policies.choices import AuditAction, ChangeState, DraftOperation
from policies.models import AuditEvent, ChangeItem, ChangeRequest, Environment
from policies.normalize import content_hash, normalize_object
from policies.services.promotion import change_promote
from portal.choices import TokenScope
from tests.api_testing import assert_error, bearer_client, session_client, token_for
from tests.factories import EnvironmentFactory, UserFactory, grant_platform_admin, make_policy
from tests.policies.changes.helpers import cluster_org  # noqa: F401 - fixture

TIMEOUT = {"spec": {"http": [{"route": [{"destination": {"host": "reviews"}}], "timeout": "3s"}]}}


def _url(org, environment: str = "") -> str:
    base = f"/api/v1/policies/{org.policy_a.pk}/overrides/"
    return f"{base}{environment}/" if environment else base


def _stored(org) -> dict:
    return Environment.objects.get(pk=org.env.pk).promotion_overrides


def test_an_approver_adds_reads_replaces_and_deletes_an_override_each_audited(cluster_org):
    org = cluster_org
    api = bearer_client(token_for(org.approver, [TokenScope.WRITE]))
    created = api.post(_url(org), {"environment": "staging", "patch": TIMEOUT}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json() == {
        "environment": "staging",
        "identity": "VirtualService/bookinfo/reviews",
        "patch": TIMEOUT,
        "may_edit": True,
    }
    assert _stored(org) == {"VirtualService/bookinfo/reviews": TIMEOUT}
    assert [o["environment"] for o in api.get(_url(org)).json()] == ["staging"]
    assert api.get(_url(org, "staging")).json()["patch"] == TIMEOUT
    assert_error(api.post(_url(org), {"environment": "staging", "patch": TIMEOUT}, format="json"), 409, code="conflict")

    labelled = {"metadata": {"labels": {"tier": "prod"}}}
    replaced = api.put(_url(org, "staging"), {"patch": labelled}, format="json")
    assert replaced.status_code == 200, replaced.json()
    assert _stored(org) == {"VirtualService/bookinfo/reviews": labelled}
    assert api.delete(_url(org, "staging")).status_code == 204
    assert _stored(org) == {}
    assert_error(api.get(_url(org, "staging")), 404, code="not_found")
    assert_error(api.delete(_url(org, "staging")), 404, code="not_found")
    assert_error(api.put(_url(org, "staging"), {"patch": labelled}, format="json"), 404, code="not_found")

    events = list(
        AuditEvent.objects.filter(action__startswith="promotion_override.")
        .order_by("sequence")
        .values_list("action", "actor_name", "environment", "before", "after")
    )
    identity = "VirtualService/bookinfo/reviews"
    assert events == [
        (AuditAction.PROMOTION_OVERRIDE_CREATED, "bob", "staging", None, {"identity": identity, "patch": TIMEOUT}),
        (
            AuditAction.PROMOTION_OVERRIDE_UPDATED,
            "bob",
            "staging",
            {"identity": identity, "patch": TIMEOUT},
            {"identity": identity, "patch": labelled},
        ),
        (AuditAction.PROMOTION_OVERRIDE_DELETED, "bob", "staging", {"identity": identity, "patch": labelled}, None),
    ]


def test_who_may_change_an_override(cluster_org):
    org = cluster_org
    body = {"environment": "staging", "patch": TIMEOUT}
    # an author of the owning team reads it but may not change it
    author = session_client(org.author)
    assert_error(author.post(_url(org), body, format="json"), 403, code="permission_denied")
    # another team's member does not even see the policy
    assert_error(session_client(org.other).post(_url(org), body, format="json"), 404)
    # a read-only token of an approver
    assert_error(bearer_client(token_for(org.approver)).post(_url(org), body, format="json"), 403)
    assert _stored(org) == {}
    # a platform admin in no team may
    admin = grant_platform_admin(UserFactory(username="pat"))
    assert session_client(admin).post(_url(org), body, format="json").status_code == 201
    listed = author.get(_url(org)).json()
    assert [(o["environment"], o["may_edit"]) for o in listed] == [("staging", False)]
    assert_error(author.delete(_url(org, "staging")), 403)
    assert _stored(org) == {"VirtualService/bookinfo/reviews": TIMEOUT}


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ([{"op": "add"}], "", "must be a JSON object"),
        ({}, "", "the patch is empty"),
        ({"metadata": {"name": "ratings"}}, "metadata.name", "may not change metadata.name"),
        ({"kind": "DestinationRule"}, "kind", "may not change kind"),
        ({"spec": {"http": "everything"}}, "spec.http", "does not validate in staging"),
        (
            {"spec": {"http": [{"route": [{"destination": {"host": "reviews"}}], "timeout": "soon"}]}},
            "spec.http[0].timeout",
            "does not validate",
        ),
        ({"spec": {"hosts": "x" * 17000}}, "", "at most 16384 bytes"),
        ({"metadata": {"labels": {"tier": "a\x00b"}}}, "", "NUL characters"),
    ],
)
def test_a_patch_that_is_not_a_valid_merge_patch_or_whose_result_does_not_validate_is_refused(
    cluster_org, patch, path, message
):
    org = cluster_org
    api = session_client(org.approver)
    details = assert_error(
        api.post(_url(org), {"environment": "staging", "patch": patch}, format="json"), 400, code="invalid_override"
    )
    assert message in api.post(_url(org), {"environment": "staging", "patch": patch}, format="json").json()["message"]
    assert path in [finding.get("path", "") for finding in details["findings"]]
    assert _stored(org) == {}
    assert not AuditEvent.objects.filter(action__startswith="promotion_override.").exists()


def test_an_environment_no_environment_can_be_called_is_a_404(cluster_org):
    org = cluster_org
    api = session_client(org.approver)
    for name in ("mars", "a%00b", "UPPER"):
        assert_error(api.put(_url(org, name), {"patch": TIMEOUT}, format="json"), 404, code="not_found")
        assert_error(api.delete(_url(org, name)), 404, code="not_found")
        assert_error(api.get(_url(org, name)), 404, code="not_found")


def test_an_unknown_environment_is_a_400_naming_the_field(cluster_org):
    org = cluster_org
    details = assert_error(
        session_client(org.approver).post(_url(org), {"environment": "mars", "patch": TIMEOUT}, format="json"),
        400,
        code="invalid",
    )
    assert "environment" in details


def test_an_override_made_through_the_api_is_applied_on_promotion_and_in_the_diff(cluster_org):
    org = cluster_org
    dev = EnvironmentFactory(name="dev", order=1)
    org.team_a.namespaces.create(environment=dev, namespace="bookinfo")
    source = make_policy(
        environment=dev, namespace="bookinfo", name="reviews", content=org.policy_a.current_revision.content
    )
    new = normalize_object(source.current_revision.content)
    new["metadata"]["labels"] = {"app": "reviews", "edited": "yes"}
    change = ChangeRequest.objects.create(
        environment=dev, title="label", author=org.author, state=ChangeState.COMPLETED
    )
    ChangeItem.objects.create(
        change=change,
        kind=source.kind,
        namespace="bookinfo",
        name="reviews",
        policy=source,
        operation=DraftOperation.UPDATE,
        base_revision=source.current_revision,
        content=new,
        content_hash=content_hash(new),
    )
    api = session_client(org.approver)
    assert api.post(_url(org), {"environment": "staging", "patch": TIMEOUT}, format="json").status_code == 201
    promoted = change_promote(actor=org.author, change=change)
    item = promoted.items.get()
    assert item.content["spec"]["http"][0]["timeout"] == "3s"
    assert item.content["metadata"]["labels"]["edited"] == "yes"
    assert "staging override applied" in item.message

import pytest

from policies.choices import AuditAction, DraftOperation, Role
from policies.exceptions import ConflictError, DraftRejected, PermissionDeniedError
from policies.models import AuditEvent, Draft
from policies.normalize import content_hash
from policies.services.drafts import draft_delete_policy, draft_discard, draft_save
from tests.factories import MembershipFactory, UserFactory
from tests.policies.drafts.helpers import (
    RATINGS_NEW,
    REVIEWS_MISSING_SUBSET,
    REVIEWS_V2,
    cluster_org,  # noqa: F401 - fixture
    stored_nothing,
)


def test_new_object_becomes_a_create_draft_keeping_the_text_as_written(cluster_org):
    org = cluster_org
    result = draft_save(author=org.author, environment=org.env, text=RATINGS_NEW, message="add ratings routing")

    draft = Draft.objects.get()
    assert draft == result.draft
    assert (draft.kind, draft.namespace, draft.name) == ("VirtualService", "bookinfo", "ratings")
    assert draft.operation == DraftOperation.CREATE
    assert draft.policy is None and draft.base_revision is None
    assert draft.source_text == RATINGS_NEW
    assert draft.content["spec"]["hosts"] == ["ratings"]
    assert draft.content_hash == content_hash(draft.content)
    assert draft.message == "add ratings routing"
    assert draft.author == org.author
    event = AuditEvent.objects.get(action=AuditAction.DRAFT_CREATED)
    assert event.actor == org.author and event.object_id == str(draft.pk)
    assert event.after["content_hash"] == draft.content_hash


def test_existing_policy_becomes_an_update_draft_based_on_its_current_revision(cluster_org):
    org = cluster_org
    draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    assert draft.operation == DraftOperation.UPDATE
    assert draft.policy == org.policy_a
    assert draft.base_revision == org.policy_a.current_revision
    assert draft.source_text.startswith("# Send everything to reviews")  # comments survive
    assert draft.content["spec"]["http"][0]["timeout"] == "5s"


def test_saving_the_same_object_again_updates_the_one_draft(cluster_org):
    org = cluster_org
    first = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2, message="first").draft
    second = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2.replace("5s", "7s")).draft

    assert second.pk == first.pk
    assert Draft.objects.count() == 1
    second.refresh_from_db()
    assert second.content["spec"]["http"][0]["timeout"] == "7s"
    assert second.message == "first"  # kept when no message is given
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    assert AuditEvent.objects.filter(action=AuditAction.DRAFT_UPDATED).count() == 1


def test_editing_a_draft_cannot_change_its_object(cluster_org):
    org = cluster_org
    draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    renamed = REVIEWS_V2.replace("name: reviews", "name: reviews-two")

    with pytest.raises(DraftRejected) as caught:
        draft_save(author=org.author, environment=org.env, text=renamed, draft=draft)

    assert caught.value.status == 400
    assert "VirtualService bookinfo/reviews" in caught.value.message
    assert "VirtualService bookinfo/reviews-two" in caught.value.message
    assert "start a new draft" in caught.value.message
    (finding,) = caught.value.findings
    assert finding["path"] == "metadata.name" and finding["line"] == 5
    draft.refresh_from_db()
    assert draft.name == "reviews" and draft.source_text == REVIEWS_V2
    assert Draft.objects.count() == 1


def test_only_its_author_can_save_a_draft(cluster_org):
    org = cluster_org
    draft = draft_save(author=org.author, environment=org.env, text=REVIEWS_V2).draft
    with pytest.raises(PermissionDeniedError):
        draft_save(author=org.approver, environment=org.env, text=REVIEWS_V2.replace("5s", "9s"), draft=draft)
    draft.refresh_from_db()
    assert "5s" in draft.source_text


@pytest.mark.parametrize("who", ["other", "outsider", "sec"])
def test_users_outside_the_owning_team_cannot_draft_there_and_nothing_is_stored(cluster_org, who):
    """carol (author in shop), nobody (no team) and sam (security approver, not in bookinfo)."""
    org = cluster_org
    with pytest.raises(DraftRejected) as caught:
        draft_save(author=getattr(org, who), environment=org.env, text=REVIEWS_V2)

    assert caught.value.status == 403
    assert caught.value.code == "permission_denied"
    assert "namespace bookinfo" in caught.value.message and "Bookinfo" in caught.value.message
    (finding,) = caught.value.findings
    assert finding["path"] == "metadata.namespace" and finding["line"] == 6
    assert stored_nothing()


def test_approvers_admins_and_superusers_of_the_owning_team_may_draft(cluster_org):
    org = cluster_org
    admin = UserFactory(username="ada")
    MembershipFactory(team=org.team_a, user=admin, role=Role.ADMIN)
    root = UserFactory(username="root", is_superuser=True)
    for user in (org.approver, admin, root):
        assert draft_save(author=user, environment=org.env, text=REVIEWS_V2).draft.author == user
    assert Draft.objects.count() == 3  # one draft per author for the same object


def test_text_that_does_not_parse_is_refused_with_its_line_and_nothing_stored(cluster_org):
    org = cluster_org
    broken = REVIEWS_V2.replace("  hosts:\n  - reviews\n", "  hosts:\n  - reviews\n   bad: [\n")
    with pytest.raises(DraftRejected) as caught:
        draft_save(author=org.author, environment=org.env, text=broken)
    assert caught.value.status == 400
    assert caught.value.findings[0]["code"] in ("MG0004", "MG0005")
    assert caught.value.findings[0]["line"] is not None
    assert stored_nothing()


def test_unsupported_kind_is_refused(cluster_org):
    org = cluster_org
    text = REVIEWS_V2.replace("kind: VirtualService", "kind: HTTPRoute")
    with pytest.raises(DraftRejected) as caught:
        draft_save(author=org.author, environment=org.env, text=text)
    assert [finding["code"] for finding in caught.value.findings] == ["MG0102"]
    assert stored_nothing()


def test_a_draft_holds_exactly_one_object(cluster_org):
    org = cluster_org
    with pytest.raises(DraftRejected) as caught:
        draft_save(author=org.author, environment=org.env, text=REVIEWS_V2 + "---\n" + RATINGS_NEW)
    assert "exactly one object" in caught.value.message and "holds 2" in caught.value.message
    with pytest.raises(DraftRejected) as caught:
        draft_save(author=org.author, environment=org.env, text="# nothing here\n")
    assert caught.value.findings[0]["code"] == "MG0012"
    assert stored_nothing()


def test_schema_and_cross_resource_findings_do_not_block_saving(cluster_org):
    org = cluster_org
    result = draft_save(author=org.author, environment=org.env, text=REVIEWS_MISSING_SUBSET)

    codes = [finding.code for finding in result.report.findings]
    assert "MG0302" in codes  # subset v9 is defined by no DestinationRule
    draft = Draft.objects.get()
    assert draft.error_count == sum(1 for finding in result.report.findings if finding.level == "error") >= 1
    assert any(finding["code"] == "MG0302" and finding["line"] == 13 for finding in draft.findings)


def test_deletion_draft_has_no_content(org):
    draft = draft_delete_policy(author=org.author, policy=org.policy_a, message="retire reviews routing")
    assert draft.operation == DraftOperation.DELETE
    assert draft.content is None and draft.source_text == ""
    assert draft.policy == org.policy_a and draft.base_revision == org.policy_a.current_revision
    assert AuditEvent.objects.get(action=AuditAction.DRAFT_CREATED).after["operation"] == "delete"
    # Asking again returns the same draft.
    assert draft_delete_policy(author=org.author, policy=org.policy_a).pk == draft.pk
    assert Draft.objects.count() == 1


def test_deletion_draft_needs_a_role_in_the_owning_team(org):
    for user in (org.other, org.outsider, org.sec):
        with pytest.raises(PermissionDeniedError):
            draft_delete_policy(author=user, policy=org.policy_a)
    assert stored_nothing()


def test_deletion_is_refused_while_the_author_drafts_other_content(cluster_org):
    org = cluster_org
    draft_save(author=org.author, environment=org.env, text=REVIEWS_V2)
    with pytest.raises(ConflictError) as caught:
        draft_delete_policy(author=org.author, policy=org.policy_a)
    assert caught.value.status == 409
    assert Draft.objects.get().operation == DraftOperation.UPDATE


def test_author_discards_a_draft_and_the_audit_log_records_it(org):
    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    draft_discard(actor=org.author, draft=draft)
    assert not Draft.objects.exists()
    event = AuditEvent.objects.get(action=AuditAction.DRAFT_DISCARDED)
    assert event.actor == org.author and event.object_id == str(draft.pk)
    assert event.before["operation"] == "delete"


def test_others_cannot_discard_a_draft_but_a_team_admin_can(org):
    draft = draft_delete_policy(author=org.author, policy=org.policy_a)
    for user in (org.approver, org.other, org.sec):
        with pytest.raises(PermissionDeniedError):
            draft_discard(actor=user, draft=draft)
    assert Draft.objects.filter(pk=draft.pk).exists()

    admin = UserFactory(username="ada")
    MembershipFactory(team=org.team_a, user=admin, role=Role.ADMIN)
    shop_admin = UserFactory(username="sid")
    MembershipFactory(team=org.team_b, user=shop_admin, role=Role.ADMIN)
    with pytest.raises(PermissionDeniedError):
        draft_discard(actor=shop_admin, draft=draft)  # admin of another team
    draft_discard(actor=admin, draft=draft)
    assert not Draft.objects.exists()

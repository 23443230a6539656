"""Building changes the way users do: drafts first, then a change from them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AbstractBaseUser

from policies.models import ChangeRequest, Environment
from policies.services.changes import change_create, change_submit
from policies.services.drafts import draft_delete_policy, draft_save
from tests.policies.drafts.helpers import RATINGS_NEW, REVIEWS_V2, virtual_service_text

__all__ = ["RATINGS_NEW", "REVIEWS_V2", "cluster_org", "make_change", "submitted_change", "virtual_service_text"]

REVIEWS_V3 = REVIEWS_V2.replace("timeout: 5s", "timeout: 7s")

AUTHZ_RATINGS = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-viewer
  namespace: bookinfo
spec:
  selector:
    matchLabels:
      app: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/bookinfo/sa/bookinfo-reviews
"""


@pytest.fixture
def cluster_org(org, meshsim):
    """The `org` fixture with its staging environment pointing at the simulated staging cluster."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    org.meshsim = meshsim
    return org


def make_change(
    *,
    author: AbstractBaseUser,
    environment: Environment,
    texts: list[str] = (REVIEWS_V2,),
    title: str = "Tune reviews",
    delete=(),
) -> ChangeRequest:
    drafts = [draft_save(author=author, environment=environment, text=text).draft for text in texts]
    drafts += [draft_delete_policy(author=author, policy=policy) for policy in delete]
    return change_create(author=author, environment=environment, drafts=drafts, title=title)


def submitted_change(org, **kwargs) -> ChangeRequest:
    change = make_change(author=org.author, environment=org.env, **kwargs)
    return change_submit(actor=org.author, change=change)


def build_large_change(
    *,
    environment: Environment,
    author,
    count: int,
    namespace: str = "bookinfo",
    title: str = "Many items",
    prefix: str = "svc",
):
    """A change in review with `count` update items, each with a stored plan (as the worker leaves it),
    a comment on every tenth item's line 2 and the guardrails evaluated: what the change page reads.
    Writes rows directly (no cluster, no validation) so that large sizes build in seconds."""
    from django.utils import timezone

    from policies.choices import ChangeState, DraftOperation, PlanLiveState, PlanStatus, RevisionSource
    from policies.diff import diff_objects, to_yaml
    from policies.models import ChangeItem, ChangeRequest, Plan, PlanItem, Policy, PolicyRevision, ReviewComment
    from policies.normalize import content_hash, normalize_object
    from policies.services.changes import change_guardrails_refresh, items_fingerprint
    from policies.services.plans import serialize_diff
    from tests.factories import virtual_service

    now = timezone.now()
    policies = Policy.objects.bulk_create(
        [
            Policy(environment=environment, kind="VirtualService", namespace=namespace, name=f"{prefix}-{index:04d}")
            for index in range(count)
        ]
    )
    revisions = []
    for policy in policies:
        content = normalize_object(virtual_service(policy.name, namespace))
        revisions.append(
            PolicyRevision(
                policy=policy,
                number=1,
                content=content,
                content_hash=content_hash(content),
                source=RevisionSource.IMPORT,
            )
        )
    revisions = PolicyRevision.objects.bulk_create(revisions)
    for policy, revision in zip(policies, revisions):
        policy.current_revision = revision
    Policy.objects.bulk_update(policies, ["current_revision"])
    change = ChangeRequest.objects.create(
        environment=environment, title=title, author=author, state=ChangeState.IN_REVIEW, submitted_at=now
    )
    items = []
    for position, (policy, revision) in enumerate(zip(policies, revisions)):
        content = normalize_object(
            {
                **revision.content,
                "spec": {
                    **revision.content["spec"],
                    "http": [{**revision.content["spec"]["http"][0], "timeout": "5s", "retries": {"attempts": 2}}],
                },
            }
        )
        items.append(
            ChangeItem(
                change=change,
                position=position,
                kind=policy.kind,
                namespace=namespace,
                name=policy.name,
                policy=policy,
                operation=DraftOperation.UPDATE,
                base_revision=revision,
                content=content,
                content_hash=content_hash(content),
                source_text=to_yaml(content),
            )
        )
    items = ChangeItem.objects.bulk_create(items)
    plan = Plan.objects.create(
        change=change,
        status=PlanStatus.OK,
        items_fingerprint=items_fingerprint(items),
        fingerprint="f" * 64,
        content_fingerprint="c" * 64,
    )
    PlanItem.objects.bulk_create(
        [
            PlanItem(
                plan=plan,
                item=item,
                item_content_hash=item.content_hash,
                status=PlanStatus.OK,
                live_state=PlanLiveState.PRESENT,
                live_content=revision.content,
                live_hash=revision.content_hash,
                live_resource_version=str(1000 + index),
                diff_live=serialize_diff(diff_objects(revision.content, item.content)),
                diff_base=serialize_diff(diff_objects(revision.content, item.content)),
            )
            for index, (item, revision) in enumerate(zip(items, revisions))
        ]
    )
    ReviewComment.objects.bulk_create(
        [
            ReviewComment(change=change, item=item, line=2, body=f"Why here? ({item.name})", author=author)
            for item in items[::10]
        ]
    )
    change_guardrails_refresh(change=change, items=list(ChangeItem.objects.filter(change=change)))
    return change

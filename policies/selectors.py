"""Reads shared by views, the API and tasks. Visibility rules live here and nowhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.auth.models import User as DjangoUser
from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet, Subquery

from policies.choices import (
    OPEN_CHANGE_STATES,
    ROLE_RANK,
    SECURITY_REVIEW_KINDS,
    ChangeState,
    ReviewVerdict,
    RevisionSource,
    Role,
)
from policies.diff import diff_objects
from policies.models import (  # change requests
    AuditEvent,
    ChangeItem,
    ChangeRequest,
    Draft,
    Environment,
    Membership,
    NamespaceOwnership,
    Plan,
    Policy,
    PolicyDrift,  # drift
    PolicyRevision,
    Review,
    ReviewComment,
    ServiceAccount,
    Team,
)
from policies.validation.service import validate_text

if TYPE_CHECKING:
    from policies.diff import ObjectDiff
    from policies.validation.service import ValidationReport

User = DjangoUser | AnonymousUser


def sees_everything(user: User) -> bool:
    """Platform admins and members of a security team read every policy (one query)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    security = Membership.objects.filter(user=user, team__is_security=True)
    return (
        get_user_model().objects.filter(pk=user.pk).filter(Exists(_platform_grants(user)) | Exists(security)).exists()
    )


def _owner_subquery(field: str = "team__name") -> Subquery:
    return Subquery(
        NamespaceOwnership.objects.filter(environment=OuterRef("environment"), namespace=OuterRef("namespace")).values(
            field
        )[:1]
    )


def policy_list(*, user: User) -> QuerySet[Policy]:
    """The policies a user may read, with owner team and current revision loaded."""
    policies = Policy.objects.select_related("environment", "current_revision").annotate(
        owner_team=_owner_subquery("team__name"), owner_team_slug=_owner_subquery("team__slug")
    )
    if not user.is_authenticated:
        return policies.none()
    if sees_everything(user):
        return policies
    owned = NamespaceOwnership.objects.filter(
        environment=OuterRef("environment"), namespace=OuterRef("namespace"), team__memberships__user=user
    )
    return policies.filter(Exists(owned))


def page_pk_first(queryset: QuerySet[Policy], number: Any, per_page: int) -> Page:
    """One page of `queryset`: the page's primary keys first (ordered, without the annotations), then
    only those rows with their annotations. The owner-team subqueries run for the page's rows, not
    for every row an OFFSET skips, and in the default order the keys come from the index that serves
    it (`policy_pks`), so the last page costs what the first does."""
    keys: Any = policy_pks(queryset)  # counted and sliced as Paginator does a queryset
    page = Paginator(keys, per_page).get_page(number)
    page.object_list = rows_for_pks(queryset, list(page.object_list))
    return page


CATALOG_ORDER = ["environment__order", "environment__name", "namespace", "kind", "name"]  # Policy.Meta.ordering


class PolicyPks:
    """The primary keys of a policy queryset in the catalog's default order (environments by order
    and name, then namespace, kind, name), sliced environment by environment: within one environment
    the order is the `policy_catalog_order` index's, so a slice at any offset walks that index (from
    the nearer end) instead of sorting every row (the environment's order lives in another table,
    which no index of policies can serve); only a slice across environments sorts, and only their
    rows. Two queries a slice, as a paginated queryset: the counts per environment, then the keys.
    Paginators count it and slice it like a queryset."""

    ordered = True

    def __init__(self, queryset: QuerySet[Policy]) -> None:
        self._queryset = queryset.order_by()
        self._environments: list[tuple[int, int]] | None = None

    def _per_environment(self) -> list[tuple[int, int]]:
        """(environment id, its number of rows), in environment order."""
        if self._environments is None:
            rows = self._queryset.values_list("environment_id", "environment__order", "environment__name")
            counted = rows.annotate(n=Count("pk")).order_by()
            self._environments = [(pk, n) for pk, _, _, n in sorted(counted, key=lambda row: (row[1], row[2]))]
        return self._environments

    def count(self) -> int:
        return sum(rows for _, rows in self._per_environment())

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, window: slice) -> list[int]:
        if not isinstance(window, slice) or window.step not in (None, 1):
            raise TypeError("PolicyPks takes a slice")
        start, stop = window.start or 0, window.stop if window.stop is not None else self.count()
        environments: list[int] = []  # those the window covers
        first_offset, offset, rows_spanned = 0, 0, 0
        for environment, rows in self._per_environment():
            if offset + rows > start and offset < stop:
                if not environments:
                    first_offset = offset
                environments.append(environment)
                rows_spanned += rows
            offset += rows
        if not environments or start >= stop:
            return []
        low, high = start - first_offset, min(stop - first_offset, rows_spanned)
        if len(environments) == 1:  # the index's order: no sort
            one = self._queryset.filter(environment_id=environments[0])
            if low > rows_spanned - high:  # nearer the end: walk the index backwards (the last page is a first)
                backwards = one.order_by("-namespace", "-kind", "-name").values_list("pk", flat=True)
                return list(reversed(backwards[rows_spanned - high : rows_spanned - low]))
            keys = one.order_by("namespace", "kind", "name")
        else:  # a window across environments: one sort over theirs
            keys = self._queryset.filter(environment_id__in=environments).order_by(*CATALOG_ORDER)
        return list(keys.values_list("pk", flat=True)[low:high])


def policy_pks(queryset: QuerySet[Policy]) -> PolicyPks | QuerySet[Any]:
    """`PolicyPks` of `queryset` in the default order; a plain list of keys for any other order."""
    default = queryset.model._meta.ordering == CATALOG_ORDER
    if queryset.query.order_by or not queryset.query.default_ordering or not default:
        return queryset.values_list("pk", flat=True)
    return PolicyPks(queryset)


def rows_for_pks(queryset: QuerySet[Policy], pks: list[int]) -> list[Policy]:
    """The rows of `pks` from `queryset` (annotations included), in the order of `pks`."""
    rows = {row.pk: row for row in queryset.order_by().filter(pk__in=pks)}
    return [rows[pk] for pk in pks if pk in rows]


def policy_list_with_drift(*, policies: QuerySet[Policy]) -> QuerySet[Policy]:
    """`policies` annotated with `drifted` (a `PolicyDrift` row exists), in the same query."""
    return policies.annotate(drifted=Exists(PolicyDrift.objects.filter(policy=OuterRef("pk"))))


def policy_revisions(*, policy: Policy) -> QuerySet[PolicyRevision]:
    return policy.revisions.select_related("author").order_by("-number")


def environment_list(*, user: User) -> QuerySet[Environment]:
    if not user.is_authenticated:
        return Environment.objects.none()
    return Environment.objects.all()


def team_list(*, user: User) -> QuerySet[Team]:
    if not user.is_authenticated:
        return Team.objects.none()
    members = Membership.objects.select_related("user").order_by("user__username")
    return Team.objects.prefetch_related(
        Prefetch("memberships", queryset=members),
        Prefetch("namespaces", queryset=NamespaceOwnership.objects.select_related("environment")),
    )


def user_role_for_namespace(*, user: User, environment: Environment, namespace: str) -> Role | None:
    """The highest role the user holds in the team owning the namespace, or None."""
    if not user.is_authenticated:
        return None
    roles = Membership.objects.filter(
        user=user, team__namespaces__environment=environment, team__namespaces__namespace=namespace
    ).values_list("role", flat=True)
    best = max(roles, key=lambda role: ROLE_RANK[Role(role)], default=None)
    return Role(best) if best is not None else None


PLATFORM_PERMISSION = "policies.govern_platform"


def user_is_platform_admin(user: User) -> bool:
    """Platform admins: superusers and users holding the `policies.govern_platform` permission (given
    to a user or a group in the Django admin; an SSO group mapping can grant the group). A team's admin
    role governs that team only."""
    if not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    cached: bool | None = getattr(user, "_meshgate_platform_admin", None)
    if cached is None:
        cached = bool(user.is_active and _platform_grants(user).exists())
        setattr(user, "_meshgate_platform_admin", cached)  # noqa: B010 - a per-request cache on the instance
    return cached


def _platform_grants(user: User) -> QuerySet[Permission]:
    """The platform permission, given to the user or to one of their groups."""
    app_label, codename = PLATFORM_PERMISSION.split(".")
    return Permission.objects.filter(codename=codename, content_type__app_label=app_label).filter(
        Q(user=user) | Q(group__user=user)
    )


def user_is_admin(user: User) -> bool:
    """Platform-wide governance (approval rules, guardrails, windows, environments, imports, every
    delivery and the whole audit log): platform admins only, see `user_is_platform_admin`."""
    return user_is_platform_admin(user)


def user_is_team_admin(user: User, team_id: int) -> bool:
    """Admins of this team (and platform admins): its members, channels and namespaces' drafts."""
    return user.is_authenticated and (
        user_is_platform_admin(user) or Membership.objects.filter(user=user, team_id=team_id, role=Role.ADMIN).exists()
    )


def teams_administered(*, user: User) -> QuerySet[Team]:
    """The teams a user governs: every team for platform admins, else those they are an admin of."""
    if not user.is_authenticated:
        return Team.objects.none()
    if user_is_platform_admin(user):
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role=Role.ADMIN).distinct()


# --- service accounts ---------------------------------------------------------------------


def service_account_teams(*, user: User) -> QuerySet[Team]:
    """The teams whose service accounts the user manages: the teams they are an admin of, every team
    for platform admins, none for a service account (a pipeline never manages identities)."""
    if not user.is_authenticated or ServiceAccount.objects.filter(user_id=user.pk).exists():
        return Team.objects.none()
    return teams_administered(user=user)


def user_manages_service_accounts(user: User) -> bool:
    """Whether `service_account_teams` holds any team, in one query (the navigation asks it on every page)."""
    if not user.is_authenticated:
        return False
    pipeline = ServiceAccount.objects.filter(user_id=user.pk)
    team_admin = Membership.objects.filter(user_id=user.pk, role=Role.ADMIN)
    grants = Q(Exists(team_admin)) | Q(Exists(_platform_grants(user)))
    if user.is_superuser:
        grants = Q(pk=user.pk)
    return get_user_model().objects.filter(Q(pk=user.pk, is_active=True) & grants & ~Q(Exists(pipeline))).exists()


def service_account_list(*, user: User, team: Team | None = None) -> QuerySet[ServiceAccount]:
    """The service accounts the user manages (of one team if given), with their role and tokens."""
    accounts = ServiceAccount.objects.filter(team__in=service_account_teams(user=user))
    if team is not None:
        accounts = accounts.filter(team=team)
    return accounts.select_related("user", "team", "created_by").prefetch_related("user__memberships")


# --- drafts -------------------------------------------------------------------------------


def user_may_author(*, user: User, environment: Environment, namespace: str) -> bool:
    """Drafting in a namespace takes a role (author or higher) in its owning team, or superuser."""
    if not user.is_authenticated:
        return False
    return (
        user.is_superuser
        or user_role_for_namespace(user=user, environment=environment, namespace=namespace) is not None
    )


def user_may_manage_drafts(*, user: User, environment: Environment, namespace: str) -> bool:
    """Discarding someone else's draft: superusers and admins of the team owning the namespace."""
    if not user.is_authenticated:
        return False
    role = user_role_for_namespace(user=user, environment=environment, namespace=namespace)
    return user.is_superuser or role == Role.ADMIN


def draft_list(*, user: User, environment: Environment | None = None) -> QuerySet[Draft]:
    """The user's own drafts, with environment, policy and author loaded."""
    if not user.is_authenticated:
        return Draft.objects.none()
    drafts = Draft.objects.filter(author=user).select_related(
        "environment", "policy__current_revision", "base_revision", "author"
    )
    if environment is not None:
        drafts = drafts.filter(environment=environment)
    return drafts


def draft_visible_list(*, user: User) -> QuerySet[Draft]:
    """Drafts a user may open: their own; every draft for superusers; drafts in namespaces whose
    owning team the user administers."""
    drafts = Draft.objects.select_related("environment", "policy__current_revision", "base_revision", "author")
    if not user.is_authenticated:
        return drafts.none()
    if user.is_superuser:
        return drafts
    administered = NamespaceOwnership.objects.filter(
        environment=OuterRef("environment"),
        namespace=OuterRef("namespace"),
        team__memberships__user=user,
        team__memberships__role=Role.ADMIN,
    )
    return drafts.filter(Q(author=user) | Exists(administered))


def policy_for_identity(*, environment: Environment, kind: str, namespace: str, name: str) -> Policy | None:
    return (
        Policy.objects.select_related("current_revision")
        .filter(environment=environment, kind=kind, namespace=namespace, name=name)
        .first()
    )


def draft_diff(*, draft: Draft) -> ObjectDiff:
    """The draft against its policy's current revision (nothing on the left for a new policy)."""
    current = draft.policy.current_revision if draft.policy is not None else None
    return diff_objects(current.content if current is not None else None, draft.content)


def draft_validation(*, draft: Draft, dry_run: bool = False) -> ValidationReport | None:
    """A fresh validation of the draft's text against its environment (None for a deletion)."""
    if draft.content is None:
        return None

    return validate_text(environment=draft.environment, text=draft.source_text, dry_run=dry_run)


# --- change requests, reviews, plans, audit log ------------------------------------------------


def _member_of_owner(
    user: DjangoUser, *, environment_ref: str, namespace_ref: str = "namespace", roles: Any = None
) -> Exists:
    owners = NamespaceOwnership.objects.filter(
        environment=OuterRef(environment_ref), namespace=OuterRef(namespace_ref), team__memberships__user=user
    )
    if roles is not None:
        owners = owners.filter(team__memberships__role__in=roles)
    return Exists(owners)


def change_list(*, user: User) -> QuerySet:
    """Changes a user may read: their own, those touching a namespace one of their teams owns, and
    every change for superusers and security-team members."""
    changes = ChangeRequest.objects.select_related("environment", "author")
    if not user.is_authenticated:
        return changes.none()
    if sees_everything(user):
        return changes
    touched = ChangeItem.objects.filter(change=OuterRef("pk")).filter(
        _member_of_owner(user, environment_ref="change__environment")
    )
    return changes.filter(Q(author=user) | Exists(touched))


def change_current_revision_subquery() -> Subquery:
    """The current revision id, now, of the policy an item's identity names (None if it does not exist)."""
    return Subquery(
        Policy.objects.filter(
            environment=OuterRef("change__environment"),
            kind=OuterRef("kind"),
            namespace=OuterRef("namespace"),
            name=OuterRef("name"),
        ).values("current_revision")[:1]
    )


def change_items(*, change: ChangeRequest) -> QuerySet[ChangeItem]:
    """The change's items with `current_revision_now` / `current_revision_number_now` annotated
    (staleness without a query per item); base revisions without their content."""
    identity = Policy.objects.filter(
        environment=OuterRef("change__environment"),
        kind=OuterRef("kind"),
        namespace=OuterRef("namespace"),
        name=OuterRef("name"),
    )
    return (
        ChangeItem.objects.filter(change=change)
        .select_related("policy", "base_revision")
        .defer("base_revision__content")
        .annotate(
            current_revision_now=Subquery(identity.values("current_revision")[:1]),
            current_revision_number_now=Subquery(identity.values("current_revision__number")[:1]),
            policy_id_now=Subquery(identity.values("pk")[:1]),
        )
        .order_by("position", "pk")
    )


def stale_item_q() -> Q:
    """For a queryset of items annotated with `current_revision_now`."""
    return (Q(base_revision__isnull=True) & Q(current_revision_now__isnull=False)) | (
        Q(base_revision__isnull=False)
        & (Q(current_revision_now__isnull=True) | ~Q(current_revision_now=F("base_revision_id")))
    )


def stale_changes_q() -> Exists:
    """For a queryset of changes: at least one item is stale."""
    items = (
        ChangeItem.objects.filter(change=OuterRef("pk"))
        .annotate(current_revision_now=change_current_revision_subquery())
        .filter(stale_item_q())
    )
    return Exists(items)


def change_latest_plan(*, change: ChangeRequest, before: Any = None) -> Plan | None:
    """The change's newest plan (computed before `before`, when given)."""
    plans = Plan.objects.filter(change=change)
    if before is not None:
        plans = plans.filter(computed_at__lte=before)
    return plans.order_by("-computed_at", "-pk").first()


def plan_items_by_item(
    *, plan: Plan | None, summaries_only: bool = False, item_pk: int | None = None
) -> dict[int, Any]:
    """The plan's items by change item. `summaries_only`: without the live objects and base diffs
    (a large change's summary lines do not show them); `item_pk`: that item's alone."""
    if plan is None:
        return {}
    rows = plan.items.all()
    if summaries_only:
        rows = rows.defer("live_content", "diff_base")
    if item_pk is not None:
        rows = rows.filter(item_id=item_pk)
    return {plan_item.item_id: plan_item for plan_item in rows}


def change_reviews(*, change: ChangeRequest) -> list[Review]:
    return list(Review.objects.filter(change=change).select_related("reviewer").order_by("created_at", "pk"))


def change_comments(*, change: ChangeRequest) -> list[ReviewComment]:
    """Top-level comments with their replies (two queries), oldest first."""
    replies = ReviewComment.objects.select_related("author", "resolved_by").order_by("created_at", "pk")
    return list(
        ReviewComment.objects.filter(change=change, parent__isnull=True)
        .select_related("author", "resolved_by", "item")
        .prefetch_related(Prefetch("replies", queryset=replies))
        .order_by("created_at", "pk")
    )


def change_overlaps(*, change: ChangeRequest, items: Any) -> dict[int, list[Any]]:
    """{item id: other open changes of the environment touching the same policy} (one query)."""
    identities = {(item.kind, item.namespace, item.name): item.pk for item in items}
    if not identities:
        return {}
    others = (
        ChangeItem.objects.filter(
            change__environment_id=change.environment_id,
            change__state__in=OPEN_CHANGE_STATES,
            namespace__in={namespace for _, namespace, _ in identities},
        )
        .exclude(change_id=change.pk)
        .select_related("change")
        .only("kind", "namespace", "name", "change__id", "change__title", "change__state")
    )
    overlaps: dict[int, list] = {}
    for other in others:
        item_id = identities.get((other.kind, other.namespace, other.name))
        if item_id is not None and other.change not in overlaps.setdefault(item_id, []):
            overlaps[item_id].append(other.change)
    return overlaps


def change_promotion_chain(*, change: ChangeRequest) -> list[ChangeRequest]:
    """The changes this one was promoted from (oldest first), itself, and those promoted from it."""
    chain = [change]
    seen = {change.pk}
    current = change
    while current.promoted_from_id and current.promoted_from_id not in seen:
        current = ChangeRequest.objects.select_related("environment").get(pk=current.promoted_from_id)
        seen.add(current.pk)
        chain.insert(0, current)
    frontier = [change.pk]
    while frontier:
        later = list(
            ChangeRequest.objects.select_related("environment")
            .filter(promoted_from_id__in=frontier)
            .exclude(pk__in=seen)
            .order_by("pk")
        )
        for item in later:
            seen.add(item.pk)
            chain.append(item)
        frontier = [item.pk for item in later]
    return chain if len(chain) > 1 else []


def changes_waiting_for_review(*, user: User) -> QuerySet:
    """In review, not the user's own, in a namespace whose owning team the user approves for (or of
    a kind needing security review, for security-team approvers), and not already approved by the user."""
    if not user.is_authenticated:
        return ChangeRequest.objects.none()
    approver_roles = (Role.APPROVER, Role.ADMIN)
    mine = ChangeItem.objects.filter(change=OuterRef("pk")).filter(
        _member_of_owner(user, environment_ref="change__environment", roles=approver_roles)
    )
    condition: Any = Exists(mine)
    if Membership.objects.filter(user=user, team__is_security=True, role__in=approver_roles).exists():
        condition |= Exists(ChangeItem.objects.filter(change=OuterRef("pk"), kind__in=SECURITY_REVIEW_KINDS))
    approved = Review.objects.filter(
        change=OuterRef("pk"), reviewer=user, verdict=ReviewVerdict.APPROVE, voided_at__isnull=True
    )
    return (
        ChangeRequest.objects.select_related("environment", "author")
        .filter(state=ChangeState.IN_REVIEW)
        .exclude(author=user)
        .filter(condition)
        .filter(~Exists(approved))
        .order_by("submitted_at", "pk")
    )


def user_may_read_audit(user: User) -> bool:
    """The whole audit log: platform admins and security-team members (who read every policy); one
    query, as `sees_everything`."""
    return sees_everything(user)


def audit_events(
    *,
    actor: str = "",
    obj: str = "",
    object_type: str = "",
    object_id: str = "",
    environment: str = "",
    action: str = "",
    since: Any = None,
    until: Any = None,
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered: `actor` (username, exact or prefix), `obj` (a search in the
    object's repr, type or id), `action` (exact, or a prefix ending in '.'), a time range."""
    events = AuditEvent.objects.all().order_by("-sequence")
    if actor:
        events = events.filter(actor_name__istartswith=actor)
    if obj:
        events = events.filter(Q(object_repr__icontains=obj) | Q(object_type__iexact=obj) | Q(object_id=obj))
    if object_type:
        events = events.filter(object_type__iexact=object_type)
    if object_id:
        events = events.filter(object_id=object_id)
    if environment:
        events = events.filter(environment=environment)
    if action:
        events = events.filter(action__startswith=action) if action.endswith(".") else events.filter(action=action)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


@dataclass(frozen=True)
class ThreeWay:
    """A stale item's base revision, the policy's current revision, and the item's content."""

    base: dict | None
    current: dict | None
    item: dict | None
    theirs: ObjectDiff
    """base → current: what changed in the policy since the item was based on it."""
    ours: ObjectDiff
    """base → item: what the item changes."""
    now: ObjectDiff
    """current → item: what applying the item would do to the current revision."""
    conflicts: list[str]
    """Field paths the item changes that also changed since its base."""


def change_item_three_way(*, item: ChangeItem, revisions: dict[int, Any] | None = None) -> ThreeWay:
    """Base / current / item for a stale item: what others changed since the item's base, what the
    item changes, and the field paths both changed (conflicts). `revisions` ({id: PolicyRevision})
    avoids a query per item."""

    def content(revision_id: int | None) -> Any:
        if revision_id is None:
            return None
        revision = (revisions or {}).get(revision_id) or PolicyRevision.objects.get(pk=revision_id)
        return revision.content

    current_id = getattr(item, "current_revision_now", None)
    base = content(item.base_revision_id)
    current = content(current_id)
    theirs = diff_objects(base, current)
    ours = diff_objects(base, item.content)
    their_paths = {change.path for change in theirs.changes}
    conflicts = [
        change.path
        for change in ours.changes
        if any(
            change.path == path
            or change.path.startswith(path + ".")
            or path.startswith(change.path + ".")
            or change.path.startswith(path + "[")
            or path.startswith(change.path + "[")
            for path in their_paths
        )
    ]
    return ThreeWay(
        base=base,
        current=current,
        item=item.content,
        theirs=theirs,
        ours=ours,
        now=diff_objects(current, item.content),
        conflicts=conflicts,
    )


# --- drift ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftState:
    """A policy whose live object differs from the last revision Meshgate applied."""

    drift: PolicyDrift
    """The row `policies.services.drift.drift_detect` keeps (live content, resourceVersion, when)."""
    applied: PolicyRevision
    """The last revision a rollout applied (source rollout)."""
    diff: ObjectDiff
    """applied → live: what changed outside Meshgate (a deletion when the live object is gone)."""
    open_changes: list
    """Open changes that touch the policy (e.g. a re-apply already under way)."""

    @property
    def live_present(self) -> bool:
        return self.drift.live_content is not None


def policy_applied_revision(*, policy: Policy) -> PolicyRevision | None:
    """The last revision Meshgate rolled out for the policy, or None."""
    return (
        PolicyRevision.objects.filter(policy=policy, source=RevisionSource.ROLLOUT)
        .select_related("author")
        .order_by("-number")
        .first()
    )


def policy_drift(*, policy: Policy) -> DriftState | None:
    """The policy's drift as `policies.services.drift.drift_detect` last recorded it, or None when it has none."""
    drift = PolicyDrift.objects.filter(policy=policy).first()
    if drift is None:
        return None
    applied = policy_applied_revision(policy=policy)
    if applied is None:
        return None
    open_changes = list(
        ChangeRequest.objects.filter(
            environment_id=policy.environment_id,
            state__in=OPEN_CHANGE_STATES,
            items__kind=policy.kind,
            items__namespace=policy.namespace,
            items__name=policy.name,
        )
        .distinct()
        .only("pk", "title", "state")
        .order_by("-pk")
    )
    return DriftState(
        drift=drift, applied=applied, diff=diff_objects(applied.content, drift.live_content), open_changes=open_changes
    )


# --- promotion overrides ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Override:
    """A policy's promotion override in one environment (see `services.promotion_overrides`)."""

    environment: Environment
    identity: str
    patch: dict[str, Any]
    may_edit: bool = False

    @property
    def text(self) -> str:
        """The patch as YAML (keys sorted), as the page shows and edits it."""
        return yaml.safe_dump(self.patch, sort_keys=True, allow_unicode=True)


def override_identity(policy: Policy) -> str:
    return f"{policy.kind}/{policy.namespace}/{policy.name}"


def user_may_edit_override(*, user: User, environment: Environment, namespace: str) -> bool:
    """Approvers and admins of the team owning the namespace in `environment`, and platform admins."""
    if user_is_platform_admin(user):
        return True
    role = user_role_for_namespace(user=user, environment=environment, namespace=namespace)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[Role.APPROVER]


def environment_by_name(name: str) -> Environment | None:
    """The environment called `name`, or None (also for a name no environment can have, such as one
    with a NUL character, which PostgreSQL refuses to compare)."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name or "") or len(name) > 63:
        return None
    return Environment.objects.filter(name=name).first()


def promotion_overrides(*, user: User, policy: Policy) -> list[Override]:
    """The policy's overrides, one per environment that holds one, in promotion order (one query, plus
    the user's role per environment shown)."""
    found = []
    for environment in Environment.objects.order_by("order", "name").defer("api_token", "ca_certificate"):
        patch = (environment.promotion_overrides or {}).get(override_identity(policy))
        if patch:
            may = user_may_edit_override(user=user, environment=environment, namespace=policy.namespace)
            found.append(Override(environment, override_identity(policy), patch, may))
    return found

"""The approval-rule engine: who must approve a change, and whether its approvals are enough.

Rules (`ApprovalRule`, edited by admins) are matched per item: the most specific platform rule for
the item's (environment, kind) applies — environment and kind, then environment, then kind, then the
catch-all; without any rule an item needs one approval, plus a security approver for security
kinds (`choices.SECURITY_REVIEW_KINDS`: the security.istio.io kinds and EnvoyFilter, WasmPlugin and
TrafficExtension, which can rewrite the data path), plus one more in production. A team's own rule
(edited by its admins) is matched the same way among that team's rules for items in namespaces it
owns, and only ever adds to the platform's: the larger count wins and a security approver asked by
either is needed (`team_rule_problems` refuses, on save, a team rule that asks for less). A change needs:

- as many approvals as the largest requirement over its items (+1 in a production environment
  when a matching rule asks for it);
- at least one approval from an approver (or admin) of every team owning an item's namespace in
  the change's environment;
- at least one approval from an approver of a security team when an item needs it;
- never from its author (superusers included).

An approval counts only while it is not voided, its recorded item content hashes equal the items'
current hashes, its plan content fingerprint equals the latest plan's, and its reviewer is still
an approver of a team the change needs. `approval_status` says whether the approvals suffice and
names what is missing; `blockers` lists what stops approval regardless of approvals (stale items,
validation errors, guardrails, the plan).

Reads only: the services in `policies.services.changes` / `reviews` act on the result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q

from policies.choices import (
    SECURITY_REVIEW_KINDS,
    GuardrailEnforcement,
    PlanStatus,
    PolicyKind,
    ReviewVerdict,
    Role,
    SecurityApproval,
)
from policies.guardrails.engine import GuardrailResult, blocking_results
from policies.models import (
    ApprovalRule,
    ChangeItem,
    ChangeRequest,
    Environment,
    GuardrailOverride,
    Membership,
    NamespaceOwnership,
    Plan,
    Review,
    Team,
)
from policies.selectors import policy_for_identity

User = AbstractBaseUser | AnonymousUser
APPROVER_ROLES = (Role.APPROVER, Role.ADMIN)
DEFAULT_REQUIRED_APPROVALS = 1
GUARDRAIL_SUBJECT = "changeitem"


# --- requirements ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemRule:
    """What one item asks for."""

    item_id: int
    rule_id: int | None
    required: int
    security: bool
    extra_production: bool


@dataclass(frozen=True)
class Requirements:
    required: int
    teams: tuple[Team, ...]
    """Teams owning the items' namespaces: each needs one of its approvers to approve."""
    security: bool
    security_teams: tuple[Team, ...]
    unowned_namespaces: tuple[str, ...]
    per_item: dict[int, ItemRule] = field(default_factory=dict, hash=False, compare=False)

    @property
    def team_ids(self) -> set[int]:
        return {team.pk for team in self.teams}

    @property
    def role_count(self) -> int:
        """Approvals with a named role: one per owning team, one for security."""
        return len(self.teams) + (1 if self.security else 0)

    @property
    def security_label(self) -> str:
        if len(self.security_teams) == 1:
            return f"a {self.security_teams[0].name} approver"
        return "a security-team approver"


def _rule_for(rules: Sequence[ApprovalRule], *, environment_id: int, kind: str) -> ApprovalRule | None:
    """The most specific rule: (environment, kind) > (environment, any) > (any, kind) > (any, any)."""
    best, best_rank = None, -1
    for rule in rules:
        if rule.environment_id not in (None, environment_id) or rule.kind not in ("", kind):
            continue
        rank = (2 if rule.environment_id else 0) + (1 if rule.kind else 0)
        if rank > best_rank:
            best, best_rank = rule, rank
    return best


@dataclass(frozen=True)
class Demand:
    """What one rule (or the default, `rule_id=None`) asks of an item of a kind in an environment."""

    rule_id: int | None
    required: int
    security: bool
    extra_production: bool

    def count(self, *, production: bool) -> int:
        return self.required + (1 if production and self.extra_production else 0)


def _demand(*, rule_id: int | None, kind: str, required: int, security_approval: str, extra_production: bool) -> Demand:
    security = {
        SecurityApproval.ALWAYS.value: True,
        SecurityApproval.NEVER.value: False,
    }.get(security_approval, kind in SECURITY_REVIEW_KINDS)
    return Demand(rule_id, required, security, extra_production)


def demand(rule: ApprovalRule | None, *, kind: str) -> Demand:
    if rule is None:
        return _demand(
            rule_id=None,
            kind=kind,
            required=DEFAULT_REQUIRED_APPROVALS,
            security_approval=SecurityApproval.DEFAULT,
            extra_production=True,
        )
    return _demand(
        rule_id=rule.pk,
        kind=kind,
        required=rule.required_approvals,
        security_approval=rule.security_approval,
        extra_production=rule.extra_production_approval,
    )


def item_rule(
    item: ChangeItem,
    *,
    rules: Sequence[ApprovalRule],
    environment: Environment,
    owner_id: int | None = None,
) -> ItemRule:
    """The platform rule for the item, made stricter by its owning team's own rule if one matches:
    the larger count, and a security approver if either asks for one. `rules` may hold both kinds."""
    platform = demand(
        _rule_for([rule for rule in rules if rule.team_id is None], environment_id=environment.pk, kind=item.kind),
        kind=item.kind,
    )
    team_rule = None
    if owner_id is not None:
        team_rule = _rule_for(
            [rule for rule in rules if rule.team_id == owner_id], environment_id=environment.pk, kind=item.kind
        )
    if team_rule is None:
        return ItemRule(item.pk, platform.rule_id, platform.required, platform.security, platform.extra_production)
    team = demand(team_rule, kind=item.kind)
    production = environment.is_production
    if team.count(production=production) > platform.count(production=production):
        required, extra = team.required, team.extra_production
    else:
        required, extra = platform.required, platform.extra_production
    return ItemRule(item.pk, team.rule_id, required, platform.security or team.security, extra)


def change_requirements(change: ChangeRequest, *, items: Sequence[ChangeItem]) -> Requirements:
    """What the change needs (three queries: rules, owners, security teams)."""
    environment = change.environment
    rules = list(ApprovalRule.objects.filter(Q(environment=environment) | Q(environment__isnull=True)))
    namespaces = sorted({item.namespace for item in items})
    owners = {
        ownership.namespace: ownership.team
        for ownership in NamespaceOwnership.objects.filter(
            environment=environment, namespace__in=namespaces
        ).select_related("team")
    }
    per_item = {
        item.pk: item_rule(
            item,
            rules=rules,
            environment=environment,
            owner_id=owners[item.namespace].pk if item.namespace in owners else None,
        )
        for item in items
    }
    required = max((rule.required for rule in per_item.values()), default=DEFAULT_REQUIRED_APPROVALS)
    if environment.is_production and any(rule.extra_production for rule in per_item.values()):
        required += 1
    teams: dict[int, Team] = {}
    for namespace in namespaces:
        if namespace in owners:
            teams.setdefault(owners[namespace].pk, owners[namespace])
    security = any(rule.security for rule in per_item.values())
    security_teams = tuple(Team.objects.filter(is_security=True).order_by("name")) if security else ()
    return Requirements(
        required=required,
        teams=tuple(sorted(teams.values(), key=lambda team: team.name)),
        security=security,
        security_teams=security_teams,
        unowned_namespaces=tuple(namespace for namespace in namespaces if namespace not in owners),
        per_item=per_item,
    )


# --- can a rule be satisfied ------------------------------------------------------------------------


def rule_problems(
    *,
    environment: Environment | None,
    kind: str,
    required_approvals: int,
    security_approval: str,
    extra_production_approval: bool,
    team_id: int | None = None,
) -> list[str]:
    """Why a rule (or the default, with `kind=""` and `SecurityApproval.DEFAULT`) could never be met:
    for each environment it applies to and each team owning namespaces there (only `team_id` for a
    team's own rule), the people who may approve that team's changes are fewer than the approvals it
    would ask for. Empty: satisfiable."""
    environments = [environment] if environment is not None else list(Environment.objects.order_by("order"))
    teams_by_env: dict[int, set[int]] = defaultdict(set)
    owned = NamespaceOwnership.objects.filter(environment__in=environments)
    if team_id is not None:
        owned = owned.filter(team_id=team_id)
    for env_id, owner_id in owned.values_list("environment_id", "team_id"):
        teams_by_env[env_id].add(owner_id)
    approvers: dict[int, set[int]] = defaultdict(set)
    security_approvers: set[int] = set()
    for user_id, team_id, is_security in Membership.objects.filter(
        role__in=APPROVER_ROLES, user__is_active=True
    ).values_list("user_id", "team_id", "team__is_security"):
        approvers[team_id].add(user_id)
        if is_security:
            security_approvers.add(user_id)
    names = dict(Team.objects.values_list("pk", "name"))
    # Which item kinds the rule covers decides whether a security approver is needed.
    if security_approval == SecurityApproval.ALWAYS:
        cases = [True]
    elif security_approval == SecurityApproval.NEVER:
        cases = [False]
    elif kind:
        cases = [kind in SECURITY_REVIEW_KINDS]
    else:
        cases = [False, True]
    problems = []
    for env in environments:
        count = required_approvals + (1 if env.is_production and extra_production_approval else 0)
        for team_id in sorted(teams_by_env[env.pk], key=lambda pk: names.get(pk, "")):
            for security in cases:
                pool = approvers[team_id] | (security_approvers if security else set())
                needed = max(count, 1 + (1 if security else 0))
                what = "security-kind changes" if security and len(cases) > 1 else "changes"
                if security and not security_approvers:
                    problems.append(
                        f"{env.name}: {what} of team {names[team_id]} need a security approver, "
                        "and no security team has one"
                    )
                elif not approvers[team_id]:
                    problems.append(
                        f"{env.name}: {what} of team {names[team_id]} need an approver of the team, and it has none"
                    )
                elif len(pool) < needed:
                    problems.append(
                        f"{env.name}: {what} of team {names[team_id]} need {needed} approvals, but only "
                        f"{len(pool)} {'person' if len(pool) == 1 else 'people'} may approve them"
                    )
    return problems


def default_rule_problems() -> list[str]:
    """The same check for changes no rule matches (the built-in default)."""
    platform = ApprovalRule.objects.filter(team__isnull=True)
    covered_everywhere = platform.filter(environment__isnull=True, kind="").exists()
    if covered_everywhere:
        return []
    problems = []
    for environment in Environment.objects.order_by("order"):
        if platform.filter(environment=environment, kind="").exists():
            continue
        problems += rule_problems(
            environment=environment,
            kind="",
            required_approvals=DEFAULT_REQUIRED_APPROVALS,
            security_approval=SecurityApproval.DEFAULT,
            extra_production_approval=True,
        )
    return problems


def team_rule_problems(
    *,
    environment: Environment | None,
    kind: str,
    required_approvals: int,
    security_approval: str,
    extra_production_approval: bool,
) -> list[str]:
    """Why a team's own rule would make approval less strict than the platform rule (or the
    default) that applies without it, for any environment and kind it covers: fewer approvals
    (production's extra approval counted), or no security approver where the platform asks for one.
    Empty: the rule is within the platform's limits."""
    platform_rules = list(ApprovalRule.objects.filter(team__isnull=True))
    environments = [environment] if environment is not None else list(Environment.objects.order_by("order"))
    kinds = [kind] if kind else [str(value) for value in PolicyKind.values]
    fewer: dict[tuple[str, int], list[str]] = defaultdict(list)
    security: dict[str, list[str]] = defaultdict(list)
    for env in environments:
        production = env.is_production
        for each in kinds:
            platform = demand(_rule_for(platform_rules, environment_id=env.pk, kind=each), kind=each)
            team = _demand(
                rule_id=None,
                kind=each,
                required=required_approvals,
                security_approval=security_approval,
                extra_production=extra_production_approval,
            )
            if team.count(production=production) < platform.count(production=production):
                fewer[(env.name, platform.count(production=production))].append(each)
            if platform.security and not team.security:
                security[env.name].append(each)

    def kinds_label(found: list[str]) -> str:
        if kind or len(found) == len(kinds):
            return kind or "every kind"
        return ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")

    problems = []
    for (env_name, count), found in fewer.items():
        problems.append(
            f"{env_name}: the platform asks for {count} approval{'s' if count != 1 else ''} for "
            f"{kinds_label(found)}; a team rule may ask for more, never fewer"
        )
    for env_name, found in security.items():
        problems.append(
            f"{env_name}: the platform requires a security-team approver for {kinds_label(found)}; "
            "a team rule cannot waive it"
        )
    return problems


# --- who may approve -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApproverRoles:
    """The teams a user approves for (approver or admin), and whether one is a security team."""

    team_ids: frozenset[int]
    security: bool

    def covers(self, requirements: Requirements) -> bool:
        return bool(self.team_ids & requirements.team_ids) or (requirements.security and self.security)


def approver_roles(user_ids: Iterable[int]) -> dict[int, ApproverRoles]:
    """One query for any number of users."""
    user_ids = set(user_ids)
    teams: dict[int, set[int]] = defaultdict(set)
    security: dict[int, bool] = defaultdict(bool)
    for user_id, team_id, is_security in Membership.objects.filter(
        user_id__in=user_ids, role__in=APPROVER_ROLES
    ).values_list("user_id", "team_id", "team__is_security"):
        teams[user_id].add(team_id)
        security[user_id] |= is_security
    return {user_id: ApproverRoles(frozenset(teams[user_id]), security[user_id]) for user_id in user_ids}


def user_may_approve(*, user: User, change: ChangeRequest, requirements: Requirements) -> bool:
    """An approver or admin of a team the change needs (a security team when one is needed), never
    the change's author."""
    if not user.is_authenticated or user.pk == change.author_id:
        return False
    return approver_roles([user.pk])[user.pk].covers(requirements)


def why_may_not_approve(*, user: User, change: ChangeRequest, requirements: Requirements) -> str:
    if user.pk == change.author_id:
        return "you cannot approve your own change"
    needed = [f"team {team.name}" for team in requirements.teams]
    if requirements.security:
        needed.append("a security team")
    return (
        f"only approvers of {', '.join(needed) or 'the owning team'} may approve or request changes on "
        f"change #{change.pk}"
    )


# --- status ------------------------------------------------------------------------------------------


@dataclass
class ApprovalStatus:
    satisfied: bool
    required: int
    counted: list[Review]
    missing: list[str]
    not_counted: list[tuple[Review, str]] = field(default_factory=list)
    """Approvals that are not void but do not count, with the reason."""
    blockers: list[str] = field(default_factory=list)
    """What stops the change from being approved whatever its approvals."""

    @property
    def approvable(self) -> bool:
        return self.satisfied and not self.blockers

    @property
    def summary(self) -> str:
        text = f"{len(self.counted)} of {self.required} approval{'s' if self.required != 1 else ''}"
        if self.missing:
            text += "; missing: " + ", ".join(self.missing)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "satisfied": self.satisfied,
            "approvable": self.approvable,
            "required": self.required,
            "approvals": len(self.counted),
            "approved_by": [review.reviewer.get_username() for review in self.counted],
            "missing": self.missing,
            "blockers": self.blockers,
            "summary": self.summary,
        }


def current_hashes(items: Iterable[ChangeItem]) -> dict[str, str]:
    return {str(item.pk): item.content_hash for item in items}


def why_not_counted(
    review: Review,
    *,
    change: ChangeRequest,
    hashes: dict[str, str],
    plan: Plan | None,
    roles: ApproverRoles,
    requirements: Requirements,
) -> str:
    """Empty when the approval counts; otherwise why not."""
    if review.voided_at is not None:
        return f"voided: {review.voided_reason}"
    if review.reviewer_id == change.author_id:
        return "the author's own approval never counts"
    if review.item_content_hashes != hashes:
        return "the items changed after this approval"
    # A plan that could not read the cluster (empty fingerprint) is a blocker, not a reason to discount.
    if plan is None or (plan.content_fingerprint and review.plan_content_fingerprint != plan.content_fingerprint):
        return "the live state changed after this approval (the plan moved)"
    if not roles.covers(requirements):
        return "the reviewer is no longer an approver of a team this change needs"
    return ""


def approval_status(
    change: ChangeRequest,
    *,
    items: Sequence[ChangeItem] | None = None,
    reviews: Sequence[Review] | None = None,
    plan: Plan | None | bool = False,
    requirements: Requirements | None = None,
    blockers: Sequence[str] | None = None,
) -> ApprovalStatus:
    """Whether the change's approvals satisfy its rules. Pass what the caller has already loaded
    (`plan=None` means "there is no plan"); the rest is read here."""
    if items is None:
        items = list(change.items.all())
    if reviews is None:
        reviews = list(change.reviews.select_related("reviewer").filter(verdict=ReviewVerdict.APPROVE))
    if plan is False or plan is True:
        plan = latest_plan(change)
    if requirements is None:
        requirements = change_requirements(change, items=items)
    if blockers is None:
        blockers = change_blockers(change, items=items, plan=plan)
    approvals = [review for review in reviews if review.verdict == ReviewVerdict.APPROVE and review.voided_at is None]
    roles = approver_roles(review.reviewer_id for review in approvals)
    hashes = current_hashes(items)
    counted, not_counted = [], []
    for review in approvals:
        reason = why_not_counted(
            review, change=change, hashes=hashes, plan=plan, roles=roles[review.reviewer_id], requirements=requirements
        )
        if reason:
            not_counted.append((review, reason))
        else:
            counted.append(review)
    missing = [
        f"an owning team for namespace {namespace} (none is assigned)" for namespace in requirements.unowned_namespaces
    ]
    specific = 0
    for team in requirements.teams:
        if not any(team.pk in roles[review.reviewer_id].team_ids for review in counted):
            missing.append(f"an approver of team {team.name}")
            specific += 1
    if requirements.security and not any(roles[review.reviewer_id].security for review in counted):
        missing.append(requirements.security_label)
        specific += 1
    # Each role (an owning team's approver, a security approver) is a distinct person, so a change
    # needs at least as many approvals as roles, whatever the rule's count.
    required = max(requirements.required, requirements.role_count)
    more = required - len(counted) - specific
    if more > 0:
        missing.append(f"{more} more approval{'s' if more != 1 else ''}")
    return ApprovalStatus(
        satisfied=not missing and len(counted) >= required,
        required=required,
        counted=counted,
        missing=missing,
        not_counted=not_counted,
        blockers=list(blockers),
    )


def latest_plan(change: ChangeRequest) -> Plan | None:
    return change.plans.order_by("-computed_at", "-pk").first()


# --- blockers ----------------------------------------------------------------------------------------


def item_is_stale(item: ChangeItem) -> bool:
    """Needs `current_revision_now` (annotated by `selectors.change_items`) or a loaded policy."""
    if hasattr(item, "current_revision_now"):
        current = item.current_revision_now
    elif item.policy is not None:
        current = item.policy.current_revision_id
    else:
        policy = policy_for_identity(
            environment=item.change.environment, kind=item.kind, namespace=item.namespace, name=item.name
        )
        current = policy.current_revision_id if policy is not None else None
    return current != item.base_revision_id


def guardrail_results(item: ChangeItem) -> list[GuardrailResult]:
    names = GuardrailResult.__dataclass_fields__
    return [
        GuardrailResult(**{key: value for key, value in result.items() if key in names})
        for result in item.guardrail_results
    ]


def guardrail_blocking(items: Sequence[ChangeItem], *, overrides: Iterable[Any] | None = None) -> dict[int, list]:
    """{item id: failed hard-mandatory results and soft-mandatory ones without an override for the
    item's current content}. One query for the overrides unless given."""
    failing = [item for item in items if any(not r.get("passed", True) for r in item.guardrail_results)]
    if not failing:
        return {}
    if overrides is None:
        overrides = GuardrailOverride.objects.filter(
            subject_type=GUARDRAIL_SUBJECT, subject_id__in=[str(item.pk) for item in failing]
        )
    by_item: dict[str, list] = defaultdict(list)
    for override in overrides:
        by_item[override.subject_id].append(override)
    blocking = {}
    for item in failing:
        found = blocking_results(
            guardrail_results(item), overrides=by_item.get(str(item.pk), []), content_hash=item.content_hash
        )
        if found:
            blocking[item.pk] = found
    return blocking


def change_blockers(
    change: ChangeRequest,
    *,
    items: Sequence[ChangeItem],
    plan: Plan | None,
    guardrails: dict[int, list] | None = None,
) -> list[str]:
    """Human-readable reasons the change cannot be approved (or scheduled) now, whatever its approvals."""
    blockers = []
    stale = [item for item in items if item_is_stale(item)]
    if stale:
        labels = ", ".join(item.label for item in stale[:3]) + (f" and {len(stale) - 3} more" if len(stale) > 3 else "")
        blockers.append(f"the change is stale: {labels} changed since the change was based on it; rebase it")
    invalid = [item for item in items if item.error_count]
    if invalid:
        blockers.append(f"{len(invalid)} item{'s have' if len(invalid) != 1 else ' has'} validation errors")
    if guardrails is None:
        guardrails = guardrail_blocking(items)
    for results in guardrails.values():
        for result in results:
            level = GuardrailEnforcement(result.enforcement).label.lower()
            blockers.append(
                f"{level} guardrail “{result.name}” fails on {result.object}"
                + ("" if result.enforcement == GuardrailEnforcement.HARD_MANDATORY else " (an admin may override it)")
            )
    if plan is None:
        blockers.append("there is no plan yet: it is computed when the change is submitted")
    elif plan.status == PlanStatus.ERROR:
        blockers.append(f"the plan has errors: {plan.error or 'see the items'}; fix them or refresh the plan")
    return blockers

"""Environments, teams, memberships and namespace ownership."""

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from policies.choices import AuditAction, Role
from policies.models import Environment, Membership, NamespaceOwnership, Team
from policies.services.audit import audit_record

_ENVIRONMENT_PUBLIC_FIELDS = (
    "name",
    "display_name",
    "order",
    "is_production",
    "auth_mode",
    "api_url",
    "verify_tls",
    "kubeconfig_path",
    "kubeconfig_context",
    "prometheus_url",
)


def _environment_snapshot(environment: Environment) -> dict:
    """What the audit log records of an environment: never its credentials."""
    snapshot = {name: getattr(environment, name) for name in _ENVIRONMENT_PUBLIC_FIELDS}
    snapshot["has_token"] = bool(environment.api_token)
    return snapshot


@transaction.atomic
def environment_upsert(*, name: str, actor: User | None = None, **fields: Any) -> Environment:
    environment = Environment.objects.select_for_update().filter(name=name).first()
    if environment is None:
        environment = Environment(name=name, **fields)
        environment.full_clean()
        environment.save()
        audit_record(
            action=AuditAction.ENVIRONMENT_CREATED,
            actor=actor,
            obj=environment,
            environment=name,
            after=_environment_snapshot(environment),
        )
        return environment
    before = _environment_snapshot(environment)
    for field, value in fields.items():
        setattr(environment, field, value)
    environment.full_clean()
    environment.save()
    after = _environment_snapshot(environment)
    if after != before:
        audit_record(
            action=AuditAction.ENVIRONMENT_UPDATED,
            actor=actor,
            obj=environment,
            environment=name,
            before=before,
            after=after,
        )
    return environment


@transaction.atomic
def team_upsert(
    *, slug: str, name: str, is_security: bool = False, description: str = "", actor: User | None = None
) -> Team:
    team, created = Team.objects.get_or_create(
        slug=slug, defaults={"name": name, "is_security": is_security, "description": description}
    )
    if created:
        audit_record(
            action=AuditAction.TEAM_CREATED,
            actor=actor,
            obj=team,
            after={"slug": slug, "name": name, "is_security": is_security},
        )
    return team


@transaction.atomic
def team_member_set(*, team: Team, user: User, role: Role, actor: User | None = None) -> Membership:
    membership = Membership.objects.filter(team=team, user=user).first()
    before = {"role": membership.role} if membership else None
    if membership is None:
        membership = Membership.objects.create(team=team, user=user, role=role)
    elif membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    else:
        return membership
    audit_record(
        action=AuditAction.TEAM_MEMBER_SET,
        actor=actor,
        obj=team,
        before=before,
        after={"user": user.get_username(), "role": role},
    )
    return membership


@transaction.atomic
def namespace_assign(
    *, environment: Environment, namespace: str, team: Team, actor: User | None = None
) -> NamespaceOwnership:
    ownership = NamespaceOwnership.objects.filter(environment=environment, namespace=namespace).first()
    if ownership is not None and ownership.team_id == team.pk:
        return ownership
    before = {"team": ownership.team.slug} if ownership else None
    if ownership is None:
        ownership = NamespaceOwnership(environment=environment, namespace=namespace, team=team)
        ownership.full_clean()
        ownership.save()
    else:
        ownership.team = team
        ownership.save(update_fields=["team"])
    audit_record(
        action=AuditAction.NAMESPACE_ASSIGNED,
        actor=actor,
        obj=ownership,
        environment=environment.name,
        before=before,
        after={"namespace": namespace, "team": team.slug},
    )
    return ownership

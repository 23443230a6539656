from django.conf import settings
from django.db import models

from policies.choices import MembershipSource, Role
from policies.models.environment import Environment, dns_label


class Team(models.Model):
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    is_security = models.BooleanField(
        default=False, help_text="Members see every policy; its approvers are required for security kinds."
    )
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    class Meta:
        ordering = ["name"]
        permissions = [
            (
                "govern_platform",
                "Govern the platform: approval rules, guardrails, windows, environments, imports "
                "and the whole audit log",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AUTHOR)
    source = models.CharField(
        max_length=10,
        choices=MembershipSource.choices,
        default=MembershipSource.LOCAL,
        help_text="sso: set from the identity provider's groups at each login.",
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="unique_team_member")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class NamespaceOwnership(models.Model):
    """Which team owns a namespace, and so the policies in it, in one environment."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="namespace_owners")
    namespace = models.CharField(max_length=63, validators=[dns_label])
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="namespaces")

    class Meta:
        ordering = ["environment__order", "namespace"]
        constraints = [models.UniqueConstraint(fields=["environment", "namespace"], name="one_owner_per_namespace")]

    def __str__(self) -> str:
        return f"{self.environment.name}/{self.namespace} → {self.team}"


class ServiceAccount(models.Model):
    """A non-human identity owned by a team, for pipelines. It is a user without a password (so it
    can never sign in to the portal) with a membership in its team, so every permission and every
    audit row treat it exactly like a person with that role; its tokens are ordinary API tokens."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_account")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="service_accounts")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["team__name", "user__username"]

    def __str__(self) -> str:
        return self.user.get_username()

    @property
    def name(self) -> str:
        return self.user.get_username()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class GroupMapping(models.Model):
    """Single sign-on: members of the identity provider's `group` get `role` in `team`, set again at
    every login (and taken away at the next login once they leave the group)."""

    group = models.CharField(max_length=200, help_text="The group as the provider's groups claim names it.")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="group_mappings")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AUTHOR)

    class Meta:
        ordering = ["group", "team__name"]
        constraints = [models.UniqueConstraint(fields=["group", "team"], name="one_mapping_per_group_and_team")]

    def __str__(self) -> str:
        return f"{self.group} → {self.team} ({self.role})"


class ExternalIdentity(models.Model):
    """Which Meshgate user an identity provider's subject is (so a provider account can never take
    over a local account that happens to have the same name)."""

    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="external_identities")
    groups = models.JSONField(default=list, blank=True, help_text="The groups of the last login.")
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_external_subject")]

    def __str__(self) -> str:
        return f"{self.subject}@{self.issuer} → {self.user}"

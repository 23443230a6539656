from django.conf import settings
from django.db import models

from policies.choices import Role
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
            ("govern_platform", "Govern the platform: approval rules, guardrails, windows, environments, imports "
                                "and the whole audit log"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.AUTHOR)

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
        constraints = [
            models.UniqueConstraint(fields=["environment", "namespace"], name="one_owner_per_namespace")
        ]

    def __str__(self) -> str:
        return f"{self.environment.name}/{self.namespace} → {self.team}"

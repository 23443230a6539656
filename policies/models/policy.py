from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.utils import timezone

from policies.choices import LiveState, PolicyKind, RevisionSource
from policies.exceptions import ImmutableError
from policies.models.environment import Environment


class Policy(models.Model):
    """One Istio object identity: (environment, kind, namespace, name)."""

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="policies")
    kind = models.CharField(max_length=40, choices=PolicyKind.choices)
    namespace = models.CharField(max_length=63)
    name = models.CharField(max_length=253)
    current_revision = models.ForeignKey(
        "PolicyRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    live_state = models.CharField(max_length=10, choices=LiveState.choices, default=LiveState.PRESENT)
    live_resource_version = models.CharField(max_length=64, blank=True)
    live_seen_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["environment__order", "environment__name", "namespace", "kind", "name"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(fields=["environment", "kind", "namespace", "name"], name="unique_policy_identity")
        ]
        # Serves the catalog's default order within an environment (`selectors.page_pk_first` pages
        # environment by environment), and every filter by environment and namespace.
        indexes = [models.Index(fields=["environment", "namespace", "kind", "name"], name="policy_catalog_order")]

    def __str__(self) -> str:
        return f"{self.environment.name}/{self.namespace}/{self.kind}/{self.name}"


class RevisionQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise ImmutableError("policy revisions are immutable: create a new revision instead")

    def delete(self) -> NoReturn:
        raise ImmutableError("policy revisions are immutable and cannot be deleted")


class PolicyRevision(models.Model):
    """Immutable content of a policy at one point in time (normalized JSON)."""

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    content_hash = models.CharField(max_length=64, db_index=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    source = models.CharField(max_length=20, choices=RevisionSource.choices)
    message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = RevisionQuerySet.as_manager()

    class Meta:
        ordering = ["policy", "-number"]
        constraints = [models.UniqueConstraint(fields=["policy", "number"], name="unique_revision_number")]

    def __str__(self) -> str:
        return f"{self.policy} #{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Integrity, not business logic: a stored revision is never rewritten.
        if not self._state.adding:
            raise ImmutableError("policy revisions are immutable: create a new revision instead")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise ImmutableError("policy revisions are immutable and cannot be deleted")

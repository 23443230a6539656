from django.conf import settings
from django.db import models
from django.utils import timezone

from policies.choices import DraftOperation, PolicyKind
from policies.models.environment import Environment
from policies.models.policy import Policy, PolicyRevision


class Draft(models.Model):
    """An author's proposed content for one policy identity, mutable until it is submitted.

    Not a revision: revisions are immutable and are created when a change is applied. The draft
    keeps the text as written (comments, layout, line numbers) next to its normalized content.
    """

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="drafts")
    kind = models.CharField(max_length=40, choices=PolicyKind.choices)
    namespace = models.CharField(max_length=63)
    name = models.CharField(max_length=253)
    policy = models.ForeignKey(
        Policy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="drafts",
        help_text="The policy this draft changes; empty when it would create a new one.",
    )
    operation = models.CharField(max_length=10, choices=DraftOperation.choices)
    content = models.JSONField(null=True, blank=True, help_text="Normalized object; empty for a deletion.")
    source_text = models.TextField(blank=True, help_text="The YAML or JSON as the author wrote it.")
    source_file = models.CharField(max_length=500, blank=True, help_text="The uploaded file it came from.")
    source_line = models.PositiveIntegerField(
        default=0, help_text="Line of that file where source_text starts (0: no line mapping)."
    )
    content_hash = models.CharField(max_length=64, blank=True)
    base_revision = models.ForeignKey(
        PolicyRevision,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The policy's current revision when the draft was started.",
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drafts")
    message = models.CharField(max_length=500, blank=True)
    # What the validation said when the draft was last saved (pages list counts without re-validating).
    findings = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    warning_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["environment__order", "-updated_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["author", "environment", "kind", "namespace", "name"], name="one_draft_per_author_identity"
            ),
        ]
        indexes = [models.Index(fields=["environment", "namespace"])]

    def __str__(self) -> str:
        return f"draft {self.environment.name}/{self.namespace}/{self.kind}/{self.name}"

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def operation_color(self) -> str:
        return DraftOperation(self.operation).color

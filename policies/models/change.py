"""Change requests: a set of policy changes reviewed, approved and rolled out together.

- `ChangeRequest` holds the state machine (`policies.services.changes` moves it).
- `ChangeItem` is a snapshot of one author's draft: create / update / delete of one policy, from a
  base revision to new content. It changes only through `change_item_update` (which voids approvals).
- `Plan` / `PlanItem`: what the worker found in the cluster for each item (live object, diffs,
  server dry-run) and the fingerprints an approval binds to.
- `Review` (approve / request changes) is bound to the items' content hashes and the plan it saw;
  `ReviewComment` is a thread on the change, an item, or a line of an item's YAML.
- `ApprovalRule`: how many approvals, from whom, per environment and kind.
"""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from policies.choices import (
    ChangeState,
    DraftOperation,
    PlanLiveState,
    PlanStatus,
    PolicyKind,
    ReviewVerdict,
    SecurityApproval,
)
from policies.models.environment import Environment
from policies.models.policy import Policy, PolicyRevision
from policies.models.team import Team


class ChangeRequest(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="changes")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    link = models.URLField(blank=True, max_length=500, help_text="A ticket or pull request this change belongs to.")
    repository = models.URLField(blank=True, max_length=500, help_text="The repository the content comes from.")
    commit_sha = models.CharField(blank=True, max_length=64, help_text="The commit the content comes from.")
    pull_request = models.URLField(
        blank=True, max_length=500, db_index=True, help_text="The pull request the change follows."
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="changes")
    state = models.CharField(max_length=20, choices=ChangeState.choices, default=ChangeState.DRAFT, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="When the change was scheduled.")
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="When the rollout may start: the next opening of the environment's windows."
    )
    content_updated_at = models.DateTimeField(
        default=timezone.now, help_text="Last time an item's content or base changed (a plan before it is out of date)."
    )
    plan_requested_at = models.DateTimeField(
        null=True, blank=True, help_text="A plan refresh was asked for at this time (a plan before it is out of date)."
    )
    plan_rescues = models.PositiveSmallIntegerField(
        default=0, help_text="Times in a row the reconciler asked again for a lost plan since a person asked for one."
    )
    plan_given_up_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The reconciler stopped asking again for a plan lost MESHGATE_PLAN_RESCUE_ATTEMPTS times in a row "
        "(until a person asks for one: an edit, a submit, a refresh).",
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    promotion_conflicts = models.JSONField(
        default=list,
        blank=True,
        help_text="Fields where the target environment's value differs from the source's base and the promoted "
        "change edits them: [{item, path, base, target, change}]; the author resolves them.",
    )
    promoted_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="promotions",
        help_text="The completed change in the previous environment this one promotes.",
    )
    rollout_options = models.JSONField(
        default=dict,
        blank=True,
        help_text="The author's rollout plan: any of strategy, steps, analysis, gates; what is left out takes "
        "the defaults (policies.services.rollout_options).",
    )

    class Meta:
        ordering = ["-pk"]
        indexes = [models.Index(fields=["environment", "state"]), models.Index(fields=["author", "state"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def state_choice(self) -> ChangeState:
        return ChangeState(self.state)

    @property
    def state_color(self) -> str:
        return self.state_choice.color


class ChangeItem(models.Model):
    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=40, choices=PolicyKind.choices)
    namespace = models.CharField(max_length=63)
    name = models.CharField(max_length=253)
    policy = models.ForeignKey(
        Policy,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="change_items",
        help_text="Empty for a creation until the policy exists.",
    )
    operation = models.CharField(max_length=10, choices=DraftOperation.choices)
    base_revision = models.ForeignKey(
        PolicyRevision,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The revision this item was based on; empty for a creation.",
    )
    content = models.JSONField(null=True, blank=True, help_text="Normalized object; empty for a deletion.")
    content_hash = models.CharField(max_length=64, blank=True)
    source_text = models.TextField(blank=True)
    source_file = models.CharField(max_length=500, blank=True, help_text="The uploaded file it came from.")
    source_line = models.PositiveIntegerField(default=0, help_text="Line of that file where source_text starts.")
    message = models.CharField(max_length=500, blank=True)
    # The last validation (on creation, submit, edit and rebase): what the page lists without re-validating.
    findings = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    warning_count = models.PositiveIntegerField(default=0)
    # Guardrail results for this content (GuardrailResult.as_dict()), and the key they were computed for.
    guardrail_results = models.JSONField(default=list, blank=True)
    guardrails_key = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["change", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["change", "kind", "namespace", "name"], name="one_item_per_identity"),
        ]
        indexes = [models.Index(fields=["namespace", "kind", "name"])]

    def __str__(self) -> str:
        return f"{self.get_operation_display()} {self.kind} {self.namespace}/{self.name}"

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def operation_color(self) -> str:
        return DraftOperation(self.operation).color


class Plan(models.Model):
    """What the cluster held for each item when the plan was computed, and what would change."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="plans")
    computed_at = models.DateTimeField(default=timezone.now, db_index=True)
    status = models.CharField(max_length=10, choices=PlanStatus.choices)
    error = models.TextField(blank=True)
    items_fingerprint = models.CharField(max_length=64, help_text="Hash over the items' contents it planned.")
    fingerprint = models.CharField(max_length=64, help_text="Hash over item contents and live resourceVersions.")
    content_fingerprint = models.CharField(
        max_length=64, help_text="Hash over item contents and live contents: what an approval binds to."
    )
    resource_versions = models.JSONField(default=dict, blank=True, help_text="{item id: live resourceVersion}.")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-computed_at", "-pk"]
        get_latest_by = ["computed_at", "pk"]

    def __str__(self) -> str:
        return f"plan of change #{self.change_id} at {self.computed_at:%Y-%m-%d %H:%M:%S}"

    @property
    def status_color(self) -> str:
        return PlanStatus(self.status).color


class PlanItem(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="items")
    item = models.ForeignKey(ChangeItem, on_delete=models.CASCADE, related_name="plan_items")
    item_content_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=PlanStatus.choices)
    live_state = models.CharField(max_length=12, choices=PlanLiveState.choices)
    live_content = models.JSONField(null=True, blank=True, help_text="The live object, normalized.")
    live_hash = models.CharField(max_length=64, blank=True)
    live_resource_version = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    # The new content against live and against the base revision: `ObjectDiff.as_dict()` plus the
    # folded side-by-side rows, stored so that the page renders without recomputing diffs.
    diff_live = models.JSONField(default=dict, blank=True)
    diff_base = models.JSONField(default=dict, blank=True)
    findings = models.JSONField(default=list, blank=True, help_text="Server dry-run findings.")
    after_content = models.JSONField(
        null=True,
        blank=True,
        help_text="What the cluster would hold after the rollout's write: the server's dry-run answer, normalized.",
    )
    ownership = models.JSONField(
        default=dict,
        blank=True,
        help_text="Managers the write takes fields over from, fields that would survive and their owners, "
        "and the controller (Argo CD, Flux, Helm) that manages the live object.",
    )

    class Meta:
        ordering = ["plan", "item__position", "item_id"]
        constraints = [models.UniqueConstraint(fields=["plan", "item"], name="one_plan_item_per_item")]

    def __str__(self) -> str:
        return f"{self.plan} / {self.item}"

    @property
    def status_color(self) -> str:
        return PlanStatus(self.status).color


class Review(models.Model):
    """An approval or a request for changes. An approval binds to the exact item contents and the
    plan it saw; it is voided (never deleted) when either moves."""

    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    verdict = models.CharField(max_length=20, choices=ReviewVerdict.choices)
    body = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    item_content_hashes = models.JSONField(default=dict, blank=True, help_text="{item id: content hash} approved.")
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    plan_fingerprint = models.CharField(max_length=64, blank=True)
    plan_content_fingerprint = models.CharField(max_length=64, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    voided_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["change", "reviewer"],
                condition=Q(verdict=ReviewVerdict.APPROVE, voided_at__isnull=True),
                name="one_active_approval_per_reviewer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_verdict_display()} by {self.reviewer} on change #{self.change_id}"

    @property
    def verdict_color(self) -> str:
        return ReviewVerdict(self.verdict).color

    @property
    def is_void(self) -> bool:
        return self.voided_at is not None


class ReviewComment(models.Model):
    change = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="comments")
    item = models.ForeignKey(ChangeItem, null=True, blank=True, on_delete=models.CASCADE, related_name="comments")
    line = models.PositiveIntegerField(
        null=True, blank=True, help_text="A line of the item's YAML (the diff's right side)."
    )
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies")
    body = models.TextField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        where = f" on {self.item.label}" if self.item is not None else ""
        return f"comment by {self.author}{where}"


class ApprovalRule(models.Model):
    """How many approvals a change needs, for items of a kind in an environment.

    The most specific rule matching an item applies (environment and kind, then environment, then
    kind, then the catch-all); a change needs the largest requirement over its items.

    A rule with a team is that team's own rule: it applies to items in namespaces the team owns, on
    top of the platform rule (the one without a team) that would apply otherwise, and may only make
    approval stricter (`policies.approval.team_rule_problems`).
    """

    team = models.ForeignKey(
        Team,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="approval_rules",
        help_text="Empty: a platform rule. A team: that team's stricter rule for its own namespaces.",
    )

    environment = models.ForeignKey(
        Environment,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="approval_rules",
        help_text="Empty: every environment.",
    )
    kind = models.CharField(max_length=40, choices=PolicyKind.choices, blank=True, help_text="Empty: every kind.")
    required_approvals = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    security_approval = models.CharField(
        max_length=10,
        choices=SecurityApproval.choices,
        default=SecurityApproval.DEFAULT,
        help_text="Also require an approver of a security team: for security kinds (default), always, or never.",
    )
    extra_production_approval = models.BooleanField(
        default=True, help_text="In a production environment, one more approval than required."
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["environment__order", "kind", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "kind"], condition=Q(team__isnull=True), name="one_approval_rule_per_scope"
            ),
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(environment__isnull=True, team__isnull=True),
                name="one_global_approval_rule_per_kind",
            ),
            models.UniqueConstraint(
                fields=["team", "environment", "kind"],
                condition=Q(team__isnull=False),
                name="one_team_approval_rule_per_scope",
            ),
            models.UniqueConstraint(
                fields=["team", "kind"],
                condition=Q(environment__isnull=True, team__isnull=False),
                name="one_global_team_approval_rule_per_kind",
            ),
            models.CheckConstraint(condition=Q(required_approvals__gte=1), name="approval_rule_at_least_one"),
        ]

    def __str__(self) -> str:
        env = self.environment.name if self.environment is not None else "every environment"
        scope = f" (team {self.team})" if self.team_id is not None else ""
        return f"{self.kind or 'every kind'} in {env}{scope}: {self.required_approvals} approval(s)"

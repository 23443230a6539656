from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from policies.choices import GuardrailEnforcement, PolicyKind
from policies.guardrails.builtin import BUILTINS
from policies.guardrails.cel import CelCompileError, cel_compile


class Guardrail(models.Model):
    """An org-wide check on policy content: a built-in (Python) or an admin-authored CEL expression."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    enforcement = models.CharField(
        max_length=20,
        choices=GuardrailEnforcement.choices,
        default=GuardrailEnforcement.ADVISORY,
        help_text="Advisory is shown; soft-mandatory blocks unless an admin overrides it; hard-mandatory blocks.",
    )
    builtin_key = models.CharField(
        max_length=64, blank=True, help_text="The built-in check this row configures; blank for a CEL guardrail."
    )
    expression = models.TextField(
        blank=True,
        help_text="CEL over `object`, `environment` ({name, production}) and `params`; true = passes. "
        "Blank for built-ins.",
    )
    parameters = models.JSONField(default=dict, blank=True, help_text='Bounds and options, e.g. {"max_retries": 5}.')
    message = models.CharField(
        max_length=500,
        help_text="Shown when the check fails; may use {object}, {kind}, {namespace}, {name}, "
        "{environment}, {details} and any parameter name.",
    )
    kinds = models.JSONField(default=list, blank=True, help_text="Policy kinds checked; empty = every kind.")
    production_only = models.BooleanField(default=False, help_text="Only check objects bound for production.")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(builtin_key="") & ~Q(expression="")) | (~Q(builtin_key="") & Q(expression="")),
                name="guardrail_builtin_xor_expression",
            ),
            models.UniqueConstraint(
                fields=["builtin_key"], condition=~Q(builtin_key=""), name="unique_guardrail_builtin_key"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_builtin(self) -> bool:
        return bool(self.builtin_key)

    @property
    def enforcement_choice(self) -> GuardrailEnforcement:
        return GuardrailEnforcement(self.enforcement)

    def clean(self) -> None:
        # Shape checks, shared by the admin site and the services; the CEL compile is one of them.
        errors: dict[str, str] = {}
        if not isinstance(self.kinds, list) or any(kind not in PolicyKind.values for kind in self.kinds):
            errors["kinds"] = f"a list of policy kinds out of {', '.join(PolicyKind.values)}"
        if not isinstance(self.parameters, dict):
            errors["parameters"] = 'a JSON object, e.g. {"max_timeout_seconds": 60}'
        if self.builtin_key:
            if self.builtin_key not in BUILTINS:
                errors["builtin_key"] = f"unknown built-in {self.builtin_key!r}"
            if self.expression:
                errors["expression"] = "a built-in guardrail has no expression"
        elif not self.expression.strip():
            errors["expression"] = "write the CEL expression that must hold (true = passes)"
        else:
            try:
                cel_compile(self.expression)
            except CelCompileError as exc:
                errors["expression"] = exc.message
        if errors:
            raise ValidationError(errors)


class GuardrailOverride(models.Model):
    """An admin's written decision to let a failed soft-mandatory guardrail pass for one subject.

    Bound to the subject's content hash: once the content changes the override no longer applies.
    Never edited: a new decision is a new row (the admin site shows them read-only).
    """

    guardrail = models.ForeignKey(Guardrail, on_delete=models.PROTECT, related_name="overrides")
    subject_type = models.CharField(max_length=64, help_text='What was overridden, e.g. "changerequest".')
    subject_id = models.CharField(max_length=64)
    content_hash = models.CharField(max_length=64)
    reason = models.TextField()
    admin = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["subject_type", "subject_id", "content_hash"])]

    def __str__(self) -> str:
        return f"{self.guardrail} overridden for {self.subject_type}:{self.subject_id}"

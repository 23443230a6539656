"""Governance pages: guardrails (admins edit, everyone reads), change windows, notifications.

Views parse input, call one service and render. Included at the site root (namespace "governance").
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from policies import selectors
from policies.choices import (
    DeliveryStatus,
    GuardrailEnforcement,
    NotificationChannelKind,
    NotificationEvent,
    PolicyKind,
)
from policies.exceptions import ApplicationError, Throttled
from policies.guardrails.cel import CelCompileError, cel_compile
from policies.guardrails.engine import ManifestError, environment_info, guardrail_check, manifest_objects, matches
from policies.models import ChangeWindow, Guardrail, NotificationChannel
from policies.services import guardrails as guardrail_services
from policies.services import notifications as notification_services
from policies.services.windows import window_describe, window_status
from portal.http import signed_in_user

DELIVERY_PAGE_SIZE = 50
SUBSCRIBABLE_EVENTS = [(value, label) for value, label in NotificationEvent.choices if value != NotificationEvent.TEST]


def _require_admin(request: HttpRequest) -> None:
    if not selectors.user_is_admin(request.user):
        raise PermissionDenied("only platform admins may change guardrails")


def _apply_errors(form: forms.Form, error: ValidationError | ApplicationError) -> None:
    if isinstance(error, ApplicationError):
        form.add_error(None, error.message)
        return
    if hasattr(error, "error_dict"):
        for field, problems in error.message_dict.items():
            form.add_error(field if field in form.fields else None, problems)
    else:
        form.add_error(None, error.messages)


# --- guardrails -----------------------------------------------------------------------------------


class GuardrailForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    enforcement = forms.ChoiceField(choices=GuardrailEnforcement.choices)
    expression = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="CEL over object, environment ({name, production}) and params; true = passes. "
        'E.g. object.kind != "VirtualService" || object.spec.http.all(r, has(r.timeout))',
    )
    message = forms.CharField(
        max_length=500,
        help_text="Shown when it fails. Placeholders: {object} {kind} {namespace} {name} {environment} {details} "
        "and parameter names.",
    )
    kinds = forms.MultipleChoiceField(
        choices=PolicyKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every kind.",
    )
    parameters = forms.JSONField(required=False, initial=dict, widget=forms.Textarea(attrs={"rows": 2}))
    production_only = forms.BooleanField(required=False)
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, builtin: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.builtin = builtin
        if builtin:
            del self.fields["expression"]

    def clean_parameters(self) -> dict:
        value = self.cleaned_data.get("parameters")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError('a JSON object, e.g. {"max_retries": 5}')
        return value


def _guardrail_initial(guardrail: Guardrail) -> dict[str, Any]:
    return {
        field: getattr(guardrail, field)
        for field in (
            "name",
            "description",
            "enforcement",
            "expression",
            "message",
            "kinds",
            "parameters",
            "production_only",
            "enabled",
        )
    }


@login_required
@require_safe
def guardrail_list(request: HttpRequest) -> HttpResponse:
    guardrails = list(Guardrail.objects.order_by("-enabled", "name"))
    return render(
        request,
        "governance/guardrail_list.html",
        {
            "guardrails": guardrails,
            "is_admin": selectors.user_is_admin(request.user),
            "tab": "guardrails",
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def guardrail_create(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    form = GuardrailForm(request.POST or None, initial={"enforcement": GuardrailEnforcement.ADVISORY, "enabled": True})
    if request.method == "POST" and form.is_valid():
        try:
            guardrail = guardrail_services.guardrail_create(actor=signed_in_user(request), **form.cleaned_data)
        except (ValidationError, ApplicationError) as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Guardrail “{guardrail.name}” created.")
            return redirect("governance:guardrail-edit", pk=guardrail.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "governance/guardrail_form.html", _form_context(request, form, None), status=status)


@login_required
@require_http_methods(["GET", "POST"])
def guardrail_edit(request: HttpRequest, pk: int) -> HttpResponse:
    _require_admin(request)
    guardrail = get_object_or_404(Guardrail, pk=pk)
    form = GuardrailForm(request.POST or None, initial=_guardrail_initial(guardrail), builtin=guardrail.is_builtin)
    if request.method == "POST" and form.is_valid():
        try:
            guardrail = guardrail_services.guardrail_update(
                actor=signed_in_user(request), guardrail=guardrail, **form.cleaned_data
            )
        except (ValidationError, ApplicationError) as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Guardrail “{guardrail.name}” saved.")
            return redirect("governance:guardrail-edit", pk=guardrail.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "governance/guardrail_form.html", _form_context(request, form, guardrail), status=status)


def _form_context(request: HttpRequest, form: GuardrailForm, guardrail: Guardrail | None) -> dict[str, Any]:
    return {
        "form": form,
        "guardrail": guardrail,
        "tab": "guardrails",
        "environments": selectors.environment_list(user=request.user),
    }


@login_required
@require_POST
def guardrail_test(request: HttpRequest, pk: int) -> HttpResponse:
    """The test box: runs the guardrail (with the expression being edited, for CEL) on a pasted
    manifest; answers an htmx fragment (400 with the reason for bad YAML or CEL)."""
    _require_admin(request)
    guardrail = get_object_or_404(Guardrail, pk=pk)
    environment = (
        selectors.environment_list(user=request.user).filter(pk=request.POST.get("environment") or None).first()  # type: ignore[misc]  # pk=None matches nothing
    )
    context: dict[str, Any] = {"guardrail": guardrail, "environment": environment}
    expression = None
    if not guardrail.is_builtin and request.POST.get("expression", "").strip():
        expression = request.POST["expression"].strip()
    try:
        if environment is None:
            raise ManifestError("pick the environment to test against")
        if expression is not None:
            try:
                cel_compile(expression)
            except CelCompileError as exc:
                raise ManifestError(exc.message) from None
        objects = manifest_objects(request.POST.get("manifest", ""))
    except ManifestError as exc:
        context["problem"] = exc.message
        context["line"] = exc.line
        return render(request, "governance/_guardrail_test_result.html", context, status=400)
    env = environment_info(environment)
    rows = []
    for obj in objects:
        kind = obj["kind"] if isinstance(obj.get("kind"), str) else ""
        applies = matches(guardrail, kind=kind, environment=env)
        result = guardrail_check(guardrail, obj=obj, environment=env, expression=expression) if applies else None
        rows.append(
            {
                "object": obj,
                "applies": applies,
                "result": result,
                "kind": kind,
                "name": (obj.get("metadata") or {}).get("name", "") if isinstance(obj.get("metadata"), dict) else "",
            }
        )
    context["rows"] = rows
    return render(request, "governance/_guardrail_test_result.html", context)


# --- change windows -------------------------------------------------------------------------------


@login_required
@require_safe
def windows(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    environments = list(selectors.environment_list(user=request.user))
    by_environment: dict[int, list[ChangeWindow]] = {env.pk: [] for env in environments}
    for window in ChangeWindow.objects.filter(environment__in=environments).order_by("kind", "name"):
        window.schedule = window_describe(window)  # type: ignore[attr-defined]  # for the template
        by_environment[window.environment_id].append(window)
    rows = [
        {
            "environment": env,
            "windows": by_environment[env.pk],
            "status": window_status(environment=env, at=now, windows=[w for w in by_environment[env.pk] if w.enabled]),
        }
        for env in environments
    ]
    return render(
        request,
        "governance/windows.html",
        {
            "rows": rows,
            "now": now,
            "tab": "windows",
            "can_edit": request.user.is_staff,
        },
    )


# --- notifications --------------------------------------------------------------------------------


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    owner = forms.ChoiceField(help_text="Yourself, or a team you administer.")
    kind = forms.ChoiceField(choices=NotificationChannelKind.choices)
    target = forms.CharField(max_length=500, help_text="Email address, or the webhook / Slack incoming-webhook URL.")
    secret = forms.CharField(
        required=False,
        max_length=200,
        widget=forms.PasswordInput(render_value=False),
        help_text="Webhooks: the HMAC key. Leave blank to generate one (new channel) or keep the current one.",
    )
    events = forms.MultipleChoiceField(
        choices=SUBSCRIBABLE_EVENTS,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every event.",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, user: User, editing: NotificationChannel | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owners = [("user", "Me")] + [
            (f"team:{team.pk}", f"Team {team.name}") for team in notification_services.teams_user_administers(user=user)
        ]
        if editing is not None:
            del self.fields["owner"]
        else:
            assert isinstance(self.fields["owner"], forms.ChoiceField)
            self.fields["owner"].choices = owners


@login_required
@never_cache
@require_safe
def notifications(request: HttpRequest) -> HttpResponse:
    user = request.user
    deliveries = notification_services.delivery_visible_list(user=user)
    status = request.GET.get("status", "")
    if status in DeliveryStatus.values:
        deliveries = deliveries.filter(status=status)
    page = Paginator(deliveries, DELIVERY_PAGE_SIZE).get_page(request.GET.get("page"))
    channels = list(notification_services.channel_visible_list(user=user))
    for channel in channels:
        channel.may_manage = notification_services.channel_may_manage(user=user, channel=channel)  # type: ignore[attr-defined]  # for the template
    muted = notification_services.notification_muted_events(user=user)
    return render(
        request,
        "governance/notifications.html",
        {
            "tab": "notifications",
            "page": page,
            "channels": channels,
            "status": status,
            "statuses": DeliveryStatus.choices,
            "is_admin": selectors.user_is_admin(user),
            "events": [(value, label, value in muted) for value, label in SUBSCRIBABLE_EVENTS],
            "created_secret": None,
        },
    )


def _channel_for(request: HttpRequest, pk: int, *, manage: bool = True) -> NotificationChannel:
    """404 for a channel the user cannot see, 403 for one they see but may not change."""
    channel = get_object_or_404(notification_services.channel_visible_list(user=request.user), pk=pk)
    if manage and not notification_services.channel_may_manage(user=request.user, channel=channel):
        raise PermissionDenied("only the channel's owner (or its team's admins) may change it")
    return channel


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def channel_create(request: HttpRequest) -> HttpResponse:
    form = ChannelForm(
        request.POST or None,
        user=signed_in_user(request),
        initial={"enabled": True, "kind": NotificationChannelKind.WEBHOOK},
    )
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        owner = data.pop("owner")
        team = None
        if owner.startswith("team:"):
            team = get_object_or_404(
                notification_services.teams_user_administers(user=request.user), pk=owner.removeprefix("team:")
            )
        try:
            channel = notification_services.channel_create(
                actor=signed_in_user(request), team=team, user=None if team else signed_in_user(request), **data
            )
        except (ValidationError, ApplicationError) as exc:
            _apply_errors(form, exc)
        else:
            if channel.kind == NotificationChannelKind.WEBHOOK and not data.get("secret"):
                # The generated key travels only in this response, once.
                return render(
                    request,
                    "governance/channel_form.html",
                    {
                        "form": ChannelForm(user=signed_in_user(request), editing=channel),
                        "channel": channel,
                        "created_secret": channel.secret,
                        "tab": "notifications",
                    },
                )
            messages.success(request, f"Channel “{channel.name}” added.")
            return redirect("governance:notifications")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "governance/channel_form.html", {"form": form, "channel": None, "tab": "notifications"}, status=status
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def channel_edit(request: HttpRequest, pk: int) -> HttpResponse:
    channel = _channel_for(request, pk)
    initial = {field: getattr(channel, field) for field in ("name", "kind", "target", "events", "enabled")}
    form = ChannelForm(request.POST or None, user=signed_in_user(request), editing=channel, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        if not data.get("secret"):
            data.pop("secret", None)
        try:
            channel = notification_services.channel_update(actor=signed_in_user(request), channel=channel, **data)
        except (ValidationError, ApplicationError) as exc:
            _apply_errors(form, exc)
        else:
            messages.success(request, f"Channel “{channel.name}” saved.")
            return redirect("governance:notifications")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "governance/channel_form.html",
        {"form": form, "channel": channel, "tab": "notifications"},
        status=status,
    )


@login_required
@require_POST
def channel_delete(request: HttpRequest, pk: int) -> HttpResponse:
    channel = _channel_for(request, pk)
    name = channel.name
    notification_services.channel_delete(actor=signed_in_user(request), channel=channel)
    messages.success(request, f"Channel “{name}” deleted.")
    return redirect("governance:notifications")


@login_required
@require_POST
def channel_test(request: HttpRequest, pk: int) -> HttpResponse:
    channel = _channel_for(request, pk)
    try:
        notification_services.notification_send_test(actor=signed_in_user(request), channel=channel)
    except Throttled as exc:
        messages.error(request, exc.message)
        return redirect("governance:notifications")
    messages.info(request, f"Test notification queued for “{channel.name}”; its delivery shows below.")
    return redirect("governance:notifications")


@login_required
@require_POST
def preferences(request: HttpRequest) -> HttpResponse:
    """The muted events: every subscribable event ticked in `muted` is muted, the rest are not."""
    muted = set(request.POST.getlist("muted"))
    current = notification_services.notification_muted_events(user=request.user)
    for value, _label in SUBSCRIBABLE_EVENTS:
        if (value in muted) != (value in current):
            notification_services.notification_preference_set(
                user=signed_in_user(request), event=value, muted=value in muted
            )
    messages.success(request, "Notification preferences saved.")
    return redirect("governance:notifications")

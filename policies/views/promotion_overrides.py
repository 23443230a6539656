"""A policy's per-environment promotion overrides: the list, and forms to add, edit and delete one.

Everyone who may read the policy sees the overrides; approvers of the owning team (in that
environment) and platform admins get the forms. The rules are in `policies.services.promotion_overrides`.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from policies import selectors
from policies.choices import SECURITY_KINDS
from policies.exceptions import ApplicationError, DraftRejected, PermissionDeniedError
from policies.models import Environment, Policy
from policies.services.promotion_overrides import (
    override_parse,
    promotion_override_create,
    promotion_override_delete,
    promotion_override_update,
)
from portal.http import signed_in_user


def _visible_policy(request: HttpRequest, pk: int) -> Policy:
    """The policy if the user may read it; otherwise 404, so that its existence does not leak."""
    return get_object_or_404(selectors.policy_list(user=request.user), pk=pk)


def _render(request: HttpRequest, policy: Policy, *, status: int = 200, **extra: Any) -> HttpResponse:
    overrides = selectors.promotion_overrides(user=request.user, policy=policy)
    taken = {override.environment.pk for override in overrides}
    environments = [
        env
        for env in Environment.objects.order_by("order", "name").defer("api_token", "ca_certificate")
        if env.pk not in taken
        and selectors.user_may_edit_override(user=request.user, environment=env, namespace=policy.namespace)
    ]
    context = {
        "policy": policy,
        "overrides": overrides,
        "new_environments": environments,
        "identity": selectors.override_identity(policy),
        "security_kinds": SECURITY_KINDS,
        **extra,
    }
    return render(request, "promotion_overrides/list.html", context, status=status)


@login_required
@require_safe
def override_list(request: HttpRequest, pk: int) -> HttpResponse:
    return _render(request, _visible_policy(request, pk))


@login_required
@require_POST
def override_save(request: HttpRequest, pk: int) -> HttpResponse:
    """Adds (``mode=create``) or replaces (``mode=update``) the override of one environment."""
    policy = _visible_policy(request, pk)
    name = request.POST.get("environment", "")
    environment = selectors.environment_by_name(name)
    text = request.POST.get("patch", "")
    create = request.POST.get("mode") != "update"
    if environment is None:
        messages.error(request, f"there is no environment {name!r}")
        return _render(request, policy, status=400, form_environment=name, form_text=text, form_create=create)
    try:
        patch = override_parse(text)
        save = promotion_override_create if create else promotion_override_update
        save(actor=signed_in_user(request), policy=policy, environment=environment, patch=patch)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        findings = exc.findings if isinstance(exc, DraftRejected) else []
        messages.error(request, exc.message)
        return _render(
            request,
            policy,
            status=exc.status,
            form_environment=environment.name,
            form_text=text,
            form_create=create,
            form_findings=findings,
        )
    messages.success(request, f"The override of {environment.name} is saved: it applies to the next promotion there.")
    return redirect("policies:policy-overrides", pk=policy.pk)


@login_required
@require_POST
def override_delete(request: HttpRequest, pk: int, environment: str) -> HttpResponse:
    policy = _visible_policy(request, pk)
    target = selectors.environment_by_name(environment)
    if target is None:
        raise Http404(f"there is no environment {environment!r}")
    try:
        promotion_override_delete(actor=signed_in_user(request), policy=policy, environment=target)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _render(request, policy, status=exc.status)
    messages.success(request, f"The override of {target.name} is deleted.")
    return redirect("policies:policy-overrides", pk=policy.pk)

"""Service-account pages: a team's pipeline identities and their tokens, for the team's admins and
platform admins (everyone else gets a 403).

List and create accounts, issue a token (its secret is in that one response only), rotate or revoke
a token, disable an account. Views parse input and call one service of
`policies/services/service_accounts.py`, which checks the permission again and writes the audit row.
Included at the site root (namespace "service_accounts").
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from policies import selectors
from policies.choices import Role
from policies.exceptions import ApplicationError, PermissionDeniedError
from policies.models import ServiceAccount, Team
from policies.services import service_accounts as services
from portal.forms import TokenCreateForm
from portal.http import signed_in_user
from portal.models import TOKEN_PREFIX, ApiToken

NOT_AN_ADMIN = "only an admin of the team or a platform admin manages its service accounts"


class ServiceAccountCreateForm(forms.Form):
    name = forms.CharField(max_length=50, help_text="Lowercase letters, digits and dashes; the account is sa.<name>.")
    # Any team parses; whether the user may create in it is the service's rule (a 403 if not).
    team = forms.ModelChoiceField(queryset=Team.objects.all(), to_field_name="slug")
    role = forms.ChoiceField(choices=[(role.value, role.label) for role in services.ROLES], initial=Role.AUTHOR)
    description = forms.CharField(required=False, max_length=500)

    def add_application_error(self, error: ApplicationError) -> None:
        field = error.extra.get("field")
        self.add_error(field if field in self.fields else None, error.message)


def _managed_teams(request: HttpRequest) -> QuerySet[Team]:
    teams = selectors.service_account_teams(user=signed_in_user(request))
    if not teams.exists():
        raise PermissionDenied(NOT_AN_ADMIN)
    return teams


def _account_for(request: HttpRequest, name: str) -> ServiceAccount:
    """The account named `sa.<name>` (404 if there is none), if the user manages its team (403 if not)."""
    account = get_object_or_404(
        ServiceAccount.objects.select_related("user", "team", "created_by").prefetch_related("user__memberships"),
        user__username=services.PREFIX + name,
    )
    if not selectors.service_account_teams(user=signed_in_user(request)).filter(pk=account.team_id).exists():
        raise PermissionDenied(NOT_AN_ADMIN)
    return account


def _role(account: ServiceAccount) -> str:
    membership = next(iter(account.user.memberships.all()), None)
    return membership.get_role_display() if membership else ""


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def account_list(request: HttpRequest) -> HttpResponse:
    """The accounts of the teams the user manages (`?team=` for one team), and the form for a new one."""
    user = signed_in_user(request)
    teams = _managed_teams(request)
    team: Team | None = None
    if slug := request.GET.get("team", ""):
        team = get_object_or_404(Team, slug=slug)
        if not teams.filter(pk=team.pk).exists():
            raise PermissionDenied(NOT_AN_ADMIN)
    form = ServiceAccountCreateForm(
        request.POST if request.method == "POST" else None, initial={"team": team.slug if team else ""}
    )
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                account = services.service_account_create(actor=user, **form.cleaned_data)
            except PermissionDeniedError as exc:
                raise PermissionDenied(exc.message) from exc
            except ApplicationError as exc:
                form.add_application_error(exc)
                status = exc.status
            else:
                messages.success(request, f"Service account “{account.name}” created: issue it a token below.")
                return redirect("service_accounts:detail", name=account.name.removeprefix(services.PREFIX))
    accounts = list(selectors.service_account_list(user=user, team=team))
    for account in accounts:
        account.role_label = _role(account)  # type: ignore[attr-defined]  # for the template
        account.short_name = account.name.removeprefix(services.PREFIX)  # type: ignore[attr-defined]
    context = {"accounts": accounts, "teams": teams.order_by("name"), "team": team, "form": form}
    return render(request, "service_accounts/list.html", context, status=status)


def _render_detail(
    request: HttpRequest,
    account: ServiceAccount,
    *,
    form: TokenCreateForm | None = None,
    created: ApiToken | None = None,
    plaintext: str = "",
    status: int = 200,
) -> HttpResponse:
    # The plaintext travels only in this response: it is in no session, message or row.
    context: dict[str, Any] = {
        "account": account,
        "short_name": account.name.removeprefix(services.PREFIX),
        "role_label": _role(account),
        "tokens": account.user.api_tokens.all(),
        "form": form or TokenCreateForm(),
        "created": created,
        "plaintext": plaintext,
        "token_prefix": TOKEN_PREFIX,
    }
    return render(request, "service_accounts/detail.html", context, status=status)


@login_required
@never_cache
@require_safe
def account_detail(request: HttpRequest, name: str) -> HttpResponse:
    return _render_detail(request, _account_for(request, name))


@login_required
@never_cache
@require_POST
def token_issue(request: HttpRequest, name: str) -> HttpResponse:
    account = _account_for(request, name)
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, account, form=form, status=400)
    try:
        token, plaintext = services.service_account_token_create(
            actor=signed_in_user(request), account=account, **form.cleaned_data
        )
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        form.add_application_error(exc)
        return _render_detail(request, account, form=form, status=exc.status)
    return _render_detail(request, account, created=token, plaintext=plaintext)


@login_required
@never_cache
@require_POST
def token_rotate(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    account = _account_for(request, name)
    old = get_object_or_404(ApiToken, pk=pk, user_id=account.user_id)
    try:
        token, plaintext = services.service_account_token_rotate(
            actor=signed_in_user(request), account=account, token=old
        )
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _render_detail(request, account, status=exc.status)
    messages.success(request, f"Token “{old.name}” rotated: the old secret no longer works.")
    return _render_detail(request, account, created=token, plaintext=plaintext)


@login_required
@require_POST
def token_revoke(request: HttpRequest, name: str, pk: int) -> HttpResponse:
    account = _account_for(request, name)
    token = get_object_or_404(ApiToken, pk=pk, user_id=account.user_id)
    try:
        services.service_account_token_revoke(actor=signed_in_user(request), account=account, token=token)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("service_accounts:detail", name=name)


@login_required
@require_POST
def account_disable(request: HttpRequest, name: str) -> HttpResponse:
    account = _account_for(request, name)
    try:
        services.service_account_revoke(actor=signed_in_user(request), account=account)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    messages.success(request, f"Service account “{account.name}” disabled, with every token of it.")
    return redirect("service_accounts:detail", name=name)

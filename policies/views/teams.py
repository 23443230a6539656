"""Team pages: every team with its members and namespaces; a team's admins (and platform admins)
add members, change their roles and remove them (`policies.services.teams`).

Included at the site root (namespace "teams").
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from policies import selectors
from policies.choices import MembershipSource, Role
from policies.exceptions import ApplicationError, PermissionDeniedError
from policies.models import Team
from policies.services import teams as team_services
from portal.http import signed_in_user


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.AUTHOR)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["username"].widget.attrs.update({"class": "form-control form-control-sm", "autocomplete": "off"})
        self.fields["role"].widget.attrs["class"] = "form-select form-select-sm"


class RemoveForm(forms.Form):
    username = forms.CharField(max_length=150)


def _team(request: HttpRequest, slug: str) -> Team:
    return get_object_or_404(selectors.team_list(user=request.user), slug=slug)


def _refused(request: HttpRequest, exc: ValidationError | ApplicationError) -> None:
    if isinstance(exc, PermissionDeniedError):
        raise PermissionDenied(exc.message) from exc
    if isinstance(exc, ApplicationError):
        messages.error(request, exc.message)
    else:
        messages.error(request, "; ".join(exc.messages))


def _render_team(
    request: HttpRequest, team: Team, *, form: MemberForm | None = None, status: int = 200
) -> HttpResponse:
    manage = team_services.user_may_manage_members(user=request.user, team=team)
    return render(
        request,
        "teams/detail.html",
        {
            "team": team,
            "memberships": team.memberships.all(),
            "namespaces": team.namespaces.all(),
            "manage": manage,
            "form": form or MemberForm(),
            "roles": Role.choices,
            "sso": MembershipSource.SSO,
        },
        status=status,
    )


@login_required
@require_safe
def team_list(request: HttpRequest) -> HttpResponse:
    teams = selectors.team_list(user=request.user).order_by("name")
    administered = set(selectors.teams_administered(user=request.user).values_list("pk", flat=True))
    mine = set(request.user.memberships.values_list("team_id", flat=True))  # type: ignore[union-attr]
    return render(request, "teams/list.html", {"teams": teams, "administered": administered, "mine": mine})


@login_required
@require_safe
def team_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_team(request, _team(request, slug))


@login_required
@require_http_methods(["POST"])
def team_member_save(request: HttpRequest, slug: str) -> HttpResponse:
    """Adds a member or changes a member's role."""
    team = _team(request, slug)
    try:
        team_services.require_member_manager(signed_in_user(request), team)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    form = MemberForm(request.POST)
    if not form.is_valid():
        return _render_team(request, team, form=form, status=400)
    try:
        team_services.team_member_save(actor=signed_in_user(request), team=team, **form.cleaned_data)
    except (ValidationError, ApplicationError) as exc:
        _refused(request, exc)
        return _render_team(request, team, form=form, status=400)
    messages.success(request, f"{form.cleaned_data['username']} is now {form.cleaned_data['role']} of {team.name}.")
    return redirect("teams:detail", slug=team.slug)


@login_required
@require_POST
def team_member_remove(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug)
    try:
        team_services.require_member_manager(signed_in_user(request), team)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    form = RemoveForm(request.POST)
    if not form.is_valid():
        return _render_team(request, team, status=400)
    try:
        team_services.team_member_remove(actor=signed_in_user(request), team=team, **form.cleaned_data)
    except (ValidationError, ApplicationError) as exc:
        _refused(request, exc)
        return _render_team(request, team, status=400)
    messages.success(request, f"{form.cleaned_data['username']} removed from {team.name}.")
    return redirect("teams:detail", slug=team.slug)

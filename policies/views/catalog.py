"""Server-rendered pages: the policy catalog, a policy and its revisions (and its drift, with the
two ways out of it), environments.

Views are interfaces: they read through `policies.selectors`, enqueue tasks, and render.
"""

from typing import Any

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST, require_safe

from policies import jobs, selectors
from policies.choices import SECURITY_KINDS, LiveState, PolicyKind
from policies.constants import CATALOG_PAGE_SIZE
from policies.exceptions import ApplicationError, PermissionDeniedError
from policies.filtersets import PolicyFilterSet
from policies.models import Draft, Policy
from policies.services.drift import drift_adopt, drift_reapply
from policies.views.drafts import policy_draft_actions
from portal.http import signed_in_user


def as_yaml(content: dict[str, Any]) -> str:
    """A revision's content as YAML, keys in canonical (sorted) order.

    Sorting here rather than trusting the stored order: PostgreSQL's jsonb reorders keys (shortest
    first), so the same revision would otherwise render differently on SQLite and PostgreSQL.
    """
    return yaml.safe_dump(content, sort_keys=True, allow_unicode=True)


def _wants_partial(request: HttpRequest) -> bool:
    """An htmx swap asks for the fragment; an htmx history restore needs the whole page."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


@login_required
@require_safe
def catalog(request: HttpRequest) -> HttpResponse:
    """The policies the user may see, filtered; htmx swaps in only the results fragment."""
    visible = selectors.policy_list(user=request.user)
    filterset = PolicyFilterSet(request.GET, queryset=selectors.policy_list_with_drift(policies=visible))
    valid = filterset.is_valid()
    page = selectors.page_pk_first(
        filterset.qs if valid else visible.none(), request.GET.get("page"), CATALOG_PAGE_SIZE
    )
    context: dict[str, Any] = {"filterset": filterset, "page": page, "security_kinds": SECURITY_KINDS}
    if _wants_partial(request):
        template = "policies/_catalog_results.html"
    else:
        template = "policies/catalog.html"
        context.update(_catalog_filter_bar(request, visible))
    response = render(request, template, context, status=200 if valid else 400)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _catalog_filter_bar(request: HttpRequest, visible: QuerySet[Policy]) -> dict[str, Any]:
    """Choices for the filter bar and the per-environment counts above it (a constant number of queries)."""
    counts = dict(visible.order_by().values_list("environment_id").annotate(n=Count("pk")))
    environments = list(selectors.environment_list(user=request.user).only("name", "order", "is_production"))
    return {
        "environments": environments,
        "environment_counts": [(env, counts.get(env.pk, 0)) for env in environments],
        "visible_total": sum(counts.values()),
        "teams": selectors.team_list(user=request.user).prefetch_related(None),
        "namespaces": visible.order_by("namespace").values_list("namespace", flat=True).distinct(),
        "kinds": PolicyKind.choices,
        "live_states": LiveState.choices,
        "selected_kinds": request.GET.getlist("kind"),
    }


def _visible_policy(request: HttpRequest, pk: int) -> Policy:
    """The policy if the user may read it; otherwise 404, so that its existence does not leak."""
    return get_object_or_404(selectors.policy_list(user=request.user), pk=pk)


@login_required
@require_safe
def policy_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_policy(request, _visible_policy(request, pk))


def _render_policy(request: HttpRequest, policy: Policy, *, status: int = 200) -> HttpResponse:
    revision = policy.current_revision
    drift = selectors.policy_drift(policy=policy)
    return render(
        request,
        "policies/policy_detail.html",
        {
            "policy": policy,
            "revision": revision,
            "revision_yaml": as_yaml(revision.content) if revision else "",
            "revisions": selectors.policy_revisions(policy=policy),
            "role": selectors.user_role_for_namespace(
                user=request.user, environment=policy.environment, namespace=policy.namespace
            ),
            "security_kinds": SECURITY_KINDS,
            "drift": drift,
            "drift_old_label": f"revision #{drift.applied.number} (applied)" if drift is not None else "",
            "can_act_on_drift": drift is not None
            and selectors.user_may_author(
                user=request.user, environment=policy.environment, namespace=policy.namespace
            ),
            **policy_draft_actions(request, policy),
        },
        status=status,
    )


# --- drift: adopt the live object, or re-apply what Meshgate applied ----------------------------------


@login_required
@require_POST
def policy_drift_adopt(request: HttpRequest, pk: int) -> HttpResponse:
    policy = _visible_policy(request, pk)
    try:
        draft = drift_adopt(actor=signed_in_user(request), policy=policy)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _render_policy(request, _visible_policy(request, pk), status=exc.status)
    messages.success(
        request,
        f"The live {policy.kind} {policy.namespace}/{policy.name} is now your draft: "
        "make it a change to record the drift in Meshgate.",
    )
    return redirect(_draft_url(draft))


@login_required
@require_POST
def policy_drift_reapply(request: HttpRequest, pk: int) -> HttpResponse:
    policy = _visible_policy(request, pk)
    try:
        change = drift_reapply(actor=signed_in_user(request), policy=policy)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return _render_policy(request, _visible_policy(request, pk), status=exc.status)
    messages.success(request, f"Change #{change.pk} puts the applied revision back: submit it for review.")
    return redirect("changes:detail", pk=change.pk)


def _draft_url(draft: Draft) -> str:
    """The editor for a draft with content; the draft's page for a deletion draft."""
    if draft.content is not None:
        try:
            return reverse("editor:draft-edit", args=[draft.pk])
        except NoReverseMatch:
            pass
    return reverse("policies:draft-detail", args=[draft.pk])


@login_required
@require_safe
def revision_detail(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    policy = _visible_policy(request, pk)
    revision = get_object_or_404(selectors.policy_revisions(policy=policy).select_related("parent"), number=number)
    return render(
        request,
        "policies/revision_detail.html",
        {
            "policy": policy,
            "revision": revision,
            "revision_yaml": as_yaml(revision.content),
            "security_kinds": SECURITY_KINDS,
        },
    )


@login_required
@require_safe
def environments(request: HttpRequest) -> HttpResponse:
    rows = (
        selectors.environment_list(user=request.user)
        .defer("api_token", "ca_certificate")  # credentials are never shown, so never decrypted here
        .annotate(policy_count=Count("policies"))
    )
    return render(
        request,
        "policies/environments.html",
        {"environments": rows, "can_import": selectors.user_is_admin(request.user)},
    )


@login_required
@require_POST
def environment_import(request: HttpRequest, pk: int) -> HttpResponse:
    if not selectors.user_is_admin(request.user):
        raise PermissionDenied("only platform admins can import from a cluster")
    environment = get_object_or_404(selectors.environment_list(user=request.user), pk=pk)
    environment_id, user_id = environment.pk, request.user.pk
    jobs.import_environment.on_commit(environment_id, user_id)
    messages.success(request, f"Import queued for {environment.name}.")
    return redirect("policies:environments")

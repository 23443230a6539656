"""Pages for change requests: the dashboard, the list, creating a change from drafts, the change
page (plan, diffs, line comments, approvals, guardrails, timeline) with its transitions as POST
forms, editing an item, and the approval rules. Views read through selectors and call one service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import escape
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from policies import approval, selectors
from policies.choices import (
    EDITABLE_CHANGE_STATES,
    OPEN_CHANGE_STATES,
    RETRYABLE_CHANGE_STATES,
    REVIEWABLE_CHANGE_STATES,
    SECURITY_KINDS,
    WITHDRAWABLE_CHANGE_STATES,
    ChangeState,
    GuardrailEnforcement,
    PlanLiveState,
    PolicyKind,
    ReviewVerdict,
    SecurityApproval,
)
from policies.diff import DiffRow, diff_objects
from policies.exceptions import ApplicationError, DraftRejected, PermissionDeniedError
from policies.models import (
    ApprovalRule,
    AuditEvent,
    ChangeItem,
    ChangeRequest,
    Draft,
    Environment,
    Guardrail,
    PlanItem,
    PolicyRevision,
    Review,
    ReviewComment,
    Team,
)
from policies.rollout import strategies
from policies.services import change_lifecycle as lifecycle
from policies.services import changes as change_services
from policies.services import promotion as promotion_services
from policies.services import reviews as review_services
from policies.services import rollout_options as rollout_option_services
from policies.services.plans import plan_given_up, plan_is_current, stored_rows
from policies.views.rollout_options import RolloutOptionsForm, rollout_plan_context
from portal.http import signed_in_user

CHANGE_PAGE_SIZE = 50
DASHBOARD_ROWS = 20


def _fail(request: HttpRequest, exc: Exception) -> None:
    """A refused action: 403 for permissions, otherwise a message on the page it came from."""
    if isinstance(exc, PermissionDeniedError):
        raise PermissionDenied(exc.message) from exc
    if isinstance(exc, ValidationError):
        text = "; ".join(
            f"{name}: {', '.join(errors)}" if name != "__all__" else ", ".join(errors)
            for name, errors in getattr(exc, "message_dict", {"__all__": exc.messages}).items()
        )
        messages.error(request, text)
    else:
        messages.error(request, getattr(exc, "message", str(exc)))


def _visible_change(request: HttpRequest, pk: int) -> ChangeRequest:
    """The change if the user may read it; otherwise 404 (its existence does not leak)."""
    return get_object_or_404(selectors.change_list(user=request.user), pk=pk)


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


# --- dashboard and list ---------------------------------------------------------------------------


@login_required
@require_safe
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    visible = selectors.change_list(user=user)
    open_states = OPEN_CHANGE_STATES - {ChangeState.ROLLING_OUT}
    context = {
        "drafts": selectors.draft_list(user=user)
        .defer("content", "source_text", "findings", "base_revision__content", "policy__current_revision__content")
        .order_by("-updated_at")[:DASHBOARD_ROWS],
        "waiting": list(selectors.changes_waiting_for_review(user=user)[:DASHBOARD_ROWS]),
        "mine": list(visible.filter(author=user).order_by("-updated_at")[:DASHBOARD_ROWS]),
        "stale": list(
            visible.filter(state__in=open_states)
            .filter(selectors.stale_changes_q())
            .order_by("-updated_at")[:DASHBOARD_ROWS]
        ),
        "security_kinds": SECURITY_KINDS,
    }
    return render(request, "dashboard.html", context)


class ChangeFilterForm(forms.Form):
    state = forms.ChoiceField(choices=[("", "Any state"), ("open", "Open"), *ChangeState.choices], required=False)
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.none(), required=False, to_field_name="name", empty_label="Any environment"
    )
    mine = forms.BooleanField(required=False, label="Mine only")
    q = forms.CharField(required=False, label="Search")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.fields["environment"], forms.ModelChoiceField)
        self.fields["environment"].queryset = selectors.environment_list(user=user).only("name", "display_name")
        for name in ("state", "environment"):
            self.fields[name].widget.attrs["class"] = "form-select form-select-sm"
        self.fields["q"].widget.attrs.update({"class": "form-control form-control-sm", "placeholder": "Title or #id"})


@login_required
@require_safe
def change_list(request: HttpRequest) -> HttpResponse:
    form = ChangeFilterForm(request.GET or None, user=signed_in_user(request))
    changes = selectors.change_list(user=request.user).order_by("-pk")
    if form.is_valid():
        data = form.cleaned_data
        if data["state"] == "open":
            changes = changes.filter(state__in=OPEN_CHANGE_STATES)
        elif data["state"]:
            changes = changes.filter(state=data["state"])
        if data["environment"]:
            changes = changes.filter(environment=data["environment"])
        if data["mine"]:
            changes = changes.filter(author=request.user)
        if data["q"]:
            query = data["q"].strip().lstrip("#")
            changes = changes.filter(pk=int(query)) if query.isdigit() else changes.filter(title__icontains=query)
    page = Paginator(changes, CHANGE_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "changes/list.html", {"form": form, "page": page, "query": query.urlencode()})


# --- create ----------------------------------------------------------------------------------------------


class ChangeCreateForm(forms.Form):
    drafts = forms.ModelMultipleChoiceField(
        queryset=Draft.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one draft."},
    )
    title = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"class": "form-control"}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4, "class": "form-control"}))
    link = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "form-control", "placeholder": "https://…"}),
        help_text="A ticket or pull request, optional.",
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.fields["drafts"], forms.ModelMultipleChoiceField)
        self.fields["drafts"].queryset = selectors.draft_list(user=user)

    def clean_drafts(self) -> list[Draft]:
        drafts = list(self.cleaned_data["drafts"])
        if len({draft.environment_id for draft in drafts}) > 1:
            raise forms.ValidationError("A change is for one environment: choose drafts of one environment.")
        return drafts


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def change_create(request: HttpRequest) -> HttpResponse:
    drafts = list(
        selectors.draft_list(user=request.user)
        .defer("content", "source_text", "findings", "base_revision__content", "policy__current_revision__content")
        .order_by("environment__order", "environment__name", "namespace", "kind", "name")
    )
    if request.method == "POST":
        form = ChangeCreateForm(request.POST, user=signed_in_user(request))
        if form.is_valid():
            chosen = form.cleaned_data["drafts"]
            try:
                change = change_services.change_create(
                    author=signed_in_user(request),
                    environment=chosen[0].environment,
                    drafts=chosen,
                    title=form.cleaned_data["title"],
                    description=form.cleaned_data["description"],
                    link=form.cleaned_data["link"],
                )
            except (ApplicationError, ValidationError) as exc:
                _fail(request, exc)
            else:
                messages.success(
                    request,
                    f"Change #{change.pk} created with {len(chosen)} item"
                    f"{'s' if len(chosen) != 1 else ''}. Submit it for review when ready.",
                )
                return redirect("changes:detail", pk=change.pk)
        status = 400
    else:
        initial = {"drafts": request.GET.getlist("draft")}
        form = ChangeCreateForm(initial=initial, user=signed_in_user(request))
        status = 200
    chosen_ids = {str(value) for value in (form["drafts"].value() or [])}
    return render(
        request,
        "changes/create.html",
        {"form": form, "drafts": drafts, "chosen_ids": chosen_ids, "security_kinds": SECURITY_KINDS},
        status=status,
    )


# --- the change page -----------------------------------------------------------------------------------------


@dataclass
class RowView:
    row: DiffRow
    threads: list[ReviewComment] = field(default_factory=list)


@dataclass
class ItemView:
    item: ChangeItem
    plan_item: PlanItem | None
    rows: list[RowView]
    item_threads: list[ReviewComment]
    stale: bool
    overlaps: list[ChangeRequest]
    guardrails: list[dict[str, Any]]
    blocking_guardrail_ids: set[int]
    overridable: list[dict[str, Any]]
    three_way: Any = None
    compact: bool = False  # a summary line; the card is loaded on demand (item_card)
    thread_count: int = 0  # of the item's lines and of the item

    @property
    def anchor(self) -> str:
        return f"item-{self.item.pk}"


def _threads_by_place(comments: list[ReviewComment]) -> tuple[dict, dict, list]:
    by_line: dict[tuple[int, int], list] = {}
    by_item: dict[int, list] = {}
    general = []
    for comment in comments:
        if comment.item_id and comment.line:
            by_line.setdefault((comment.item_id, comment.line), []).append(comment)
        elif comment.item_id:
            by_item.setdefault(comment.item_id, []).append(comment)
        else:
            general.append(comment)
    return by_line, by_item, general


# A change with more items than this lists them as summary lines, each item's card (diff, findings,
# guardrails, threads) loaded with htmx when opened: the page of a 500-item change stays small.
FULL_ITEMS_UP_TO = 20


def _item_rows(item: ChangeItem, plan_item: PlanItem | None, by_line: dict[tuple[int, int], list]) -> list[RowView]:
    """The plan's side-by-side rows of an item, with the threads of each line."""
    if plan_item is None:
        diff_rows = []
    elif plan_item.item_content_hash == item.content_hash:
        diff_rows = stored_rows(plan_item.diff_live)
    else:  # edited since the plan: the live object it saw against the item as it is now
        diff_rows = diff_objects(plan_item.live_content, item.content).side_by_side
    return [RowView(row, by_line.get((item.pk, row.right_no), []) if row.right_no else []) for row in diff_rows]


def change_page_context(request: HttpRequest, change: ChangeRequest, *, item_pk: int | None = None) -> dict[str, Any]:
    """Everything the change page shows, in a number of queries that does not grow with its items.

    `item_pk`: the context of that one item's full card only (`items` holds its view alone)."""
    user = signed_in_user(request)
    items = list(selectors.change_items(change=change))
    change_services.change_guardrails_refresh(change=change, items=items)
    plan = selectors.change_latest_plan(change=change)
    plan_items = selectors.plan_items_by_item(
        plan=plan, summaries_only=item_pk is None and len(items) > FULL_ITEMS_UP_TO, item_pk=item_pk
    )
    reviews = selectors.change_reviews(change=change)
    comments = selectors.change_comments(change=change)
    requirements = approval.change_requirements(change, items=items)
    guardrail_blocking = approval.guardrail_blocking(items)
    blockers = approval.change_blockers(change, items=items, plan=plan, guardrails=guardrail_blocking)
    status = approval.approval_status(
        change, items=items, reviews=reviews, plan=plan, requirements=requirements, blockers=blockers
    )
    overlaps = selectors.change_overlaps(change=change, items=items)
    stale_items = [item for item in items if approval.item_is_stale(item)]
    revisions = {}
    if stale_items:
        ids = {item.base_revision_id for item in stale_items} | {item.current_revision_now for item in stale_items}  # type: ignore[attr-defined]  # annotated by the selector
        revisions = PolicyRevision.objects.in_bulk([pk for pk in ids if pk])
    by_line, by_item, general = _threads_by_place(comments)
    line_thread_counts: dict[int, int] = {}
    for (thread_item, _), threads in by_line.items():
        line_thread_counts[thread_item] = line_thread_counts.get(thread_item, 0) + len(threads)
    may_approve = approval.user_may_approve(user=user, change=change, requirements=requirements)
    is_admin = selectors.user_is_admin(user)
    is_author = user.pk == change.author_id
    state = change.state
    views = []
    for item in items:
        if item_pk is not None and item.pk != item_pk:
            continue
        plan_item = plan_items.get(item.pk)
        compact = item_pk is None and len(items) > FULL_ITEMS_UP_TO
        rows = [] if compact else _item_rows(item, plan_item, by_line)
        blocking_ids = {result.guardrail_id for result in guardrail_blocking.get(item.pk, [])}
        overridable = [
            result
            for result in item.guardrail_results
            if result["guardrail_id"] in blocking_ids and result["enforcement"] == GuardrailEnforcement.SOFT_MANDATORY
        ]
        stale = item in stale_items
        views.append(
            ItemView(
                item=item,
                plan_item=plan_item,
                rows=rows,
                item_threads=by_item.get(item.pk, []),
                stale=stale,
                overlaps=overlaps.get(item.pk, []),
                guardrails=item.guardrail_results,
                blocking_guardrail_ids=blocking_ids,
                overridable=overridable if is_admin and state in EDITABLE_CHANGE_STATES else [],
                three_way=selectors.change_item_three_way(item=item, revisions=revisions) if stale else None,
                compact=compact,
                thread_count=line_thread_counts.get(item.pk, 0) + len(by_item.get(item.pk, [])),
            )
        )
    own_approval = next((review for review in status.counted if review.reviewer_id == user.pk), None)
    events = list(
        AuditEvent.objects.filter(object_type=ChangeRequest._meta.label, object_id=str(change.pk))
        .exclude(action__in=["comment.created"])
        .order_by("sequence")
    )
    plan_current = plan_is_current(change=change, plan=plan, items=items)
    schedulable = state == ChangeState.APPROVED and change_services.user_may_schedule(
        user=user, change=change, requirements=requirements
    )
    next_environment = (
        promotion_services.next_environment(change.environment) if state == ChangeState.COMPLETED else None
    )
    return {
        "change": change,
        "items": views,
        "plan": plan,
        "plan_current": plan_current,
        "plan_pending": (plan is None or not plan_current) and not plan_given_up(change),
        "plan_given_up": (plan is None or not plan_current) and plan_given_up(change),
        "rescue_attempts": settings.MESHGATE_PLAN_RESCUE_ATTEMPTS,
        "reviews": reviews,
        "approvals": [review for review in reviews if review.verdict == ReviewVerdict.APPROVE],
        "status": status,
        "not_counted": {review.pk: reason for review, reason in status.not_counted},
        "requirements": requirements,
        "general_threads": general,
        "timeline": _timeline(events, reviews, comments),
        "stale": bool(stale_items),
        "chain": selectors.change_promotion_chain(change=change),
        "is_author": is_author,
        "can_moderate": is_author or may_approve,
        "can_comment": True,
        "can_submit": is_author and state in (ChangeState.DRAFT, ChangeState.CHANGES_REQUESTED),
        "can_approve": may_approve and state in REVIEWABLE_CHANGE_STATES and own_approval is None and not stale_items,
        "can_request_changes": may_approve and state in REVIEWABLE_CHANGE_STATES,
        "can_reject": may_approve
        and state in (ChangeState.IN_REVIEW, ChangeState.CHANGES_REQUESTED, ChangeState.APPROVED),
        "can_rebase": is_author and bool(stale_items) and state in EDITABLE_CHANGE_STATES,
        "can_edit": is_author and state in EDITABLE_CHANGE_STATES,
        "can_schedule": schedulable,
        "can_promote": next_environment is not None and not change.promotions.exists(),
        "next_environment": next_environment,
        "can_refresh": state in OPEN_CHANGE_STATES - {ChangeState.ROLLING_OUT},
        "can_withdraw": is_author and state in WITHDRAWABLE_CHANGE_STATES,
        "can_replace": is_author and state in EDITABLE_CHANGE_STATES,
        "can_retry": state in RETRYABLE_CHANGE_STATES and lifecycle.user_may_retry(user=user, change=change),
        "own_approval": own_approval,
        "security_kinds": SECURITY_KINDS,
        "live_absent": PlanLiveState.ABSENT,
        "live_unreadable": PlanLiveState.UNREADABLE,
        **rollout_plan_context(change=change, items=items, may_edit=is_author or is_admin),
    }


@dataclass
class TimelineEntry:
    at: Any
    kind: str  # "event", "review" or "comment"
    actor: str
    text: str
    body: str = ""
    css: str = "muted"
    anchor: str = ""


_EVENT_TEXT = {
    "change.created": "created the change",
    "change.submitted": "submitted it for review",
    "change.item_updated": "edited an item",
    "change.approved": "— the change is approved",
    "change.back_to_review": "— the change went back to review",
    "change.changes_requested": "— changes requested",
    "change.rejected": "rejected the change",
    "change.rebased": "rebased the change",
    "change.scheduled": "scheduled the change",
    "change.promoted": "promoted the change",
    "change.guardrail_overridden": "overrode a guardrail",
    "change.rollout_options_updated": "changed the rollout plan",
    "change.items_replaced": "replaced the items (a new commit)",
    "change.withdrawn": "withdrew the change",
    "change.retried": "retried the rollout",
    "change.plan_rescued": "— the plan was asked for again (its task was lost)",
    "change.plan_given_up": "— the plan was given up: its task was lost every time it was asked for again",
    "review.voided": "— approvals voided",
    "comment.resolved": "resolved a thread",
}


def _event_text(event: AuditEvent) -> str:
    text = _EVENT_TEXT.get(event.action, event.action)
    after = event.after or {}
    if event.action == "change.item_updated":
        namespace, kind, name = (after.get("item") or "//").split("/", 2)
        text = f"edited {kind} {namespace}/{name}"
    elif event.action == "review.voided":
        text = f"— approval of {', '.join(after.get('reviewers', []))} voided: {after.get('reason', '')}"
    elif event.action == "change.back_to_review":
        text = f"— back to review: {after.get('reason', '')}"
    elif event.action == "change.scheduled":
        text = f"scheduled the change for {after.get('scheduled_for', '')}"
    elif event.action == "change.promoted":
        text = f"promoted the change to {after.get('environment', '')} as #{after.get('promoted_to', '')}"
    elif event.action == "change.created" and after.get("promoted_from"):
        text = f"created the change by promoting #{after['promoted_from']}"
    elif event.action == "change.guardrail_overridden":
        text = (
            f"overrode guardrail “{after.get('guardrail', '')}” on {after.get('item', '')}: {after.get('reason', '')}"
        )
    elif event.action == "change.rejected" and after.get("reason"):
        text = f"rejected the change: {after['reason']}"
    return text


def _timeline(events: list[AuditEvent], reviews: list[Review], comments: list[ReviewComment]) -> list[TimelineEntry]:
    entries = []
    for event in events:
        if event.action in ("review.approved", "change.changes_requested", "comment.created", "comment.resolved"):
            continue  # shown by the review / comment entry itself
        entries.append(
            TimelineEntry(
                event.created_at,
                "event",
                event.actor_name,
                _event_text(event),
                css="muted" if event.action.startswith("review.") else "info",
            )
        )
    for review in reviews:
        verb = {"approve": "approved", "request_changes": "requested changes", "comment": "commented"}[review.verdict]
        void = f" (voided: {review.voided_reason})" if review.voided_at else ""
        entries.append(
            TimelineEntry(
                review.created_at,
                "review",
                review.reviewer.get_username(),
                verb + void,
                body=review.body,
                css="muted" if review.voided_at else ReviewVerdict(review.verdict).color,
                anchor=f"review-{review.pk}",
            )
        )
    for thread in comments:
        where = ""
        if thread.item is not None:
            where = f" on {thread.item.label}" + (f" line {thread.line}" if thread.line else "")
        for comment in [thread, *thread.replies.all()]:
            verb = "replied" if comment.parent_id else "commented"
            entries.append(
                TimelineEntry(
                    comment.created_at,
                    "comment",
                    comment.author.get_username(),
                    verb + where,
                    body=comment.body,
                    anchor=f"thread-{thread.pk}",
                )
            )
        if thread.resolved_at:
            assert thread.resolved_by is not None  # resolved together
            entries.append(
                TimelineEntry(
                    thread.resolved_at, "event", thread.resolved_by.get_username(), f"resolved a thread{where}"
                )
            )
    entries.sort(key=lambda entry: entry.at)
    return entries


@login_required
@require_safe
def change_detail(request: HttpRequest, pk: int) -> HttpResponse:
    change = _visible_change(request, pk)
    return render(request, "changes/detail.html", change_page_context(request, change))


@login_required
@require_safe
def change_plan_status(request: HttpRequest, pk: int) -> HttpResponse:
    """Polled by the page while a plan is pending: reloads the page once a newer plan is stored."""
    change = _visible_change(request, pk)
    plan = selectors.change_latest_plan(change=change)
    known = request.GET.get("plan", "")
    if plan is not None and str(plan.pk) != known:
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    return HttpResponse(status=204)


def _item_of(change: ChangeRequest, item_pk: int) -> ChangeItem:
    return get_object_or_404(
        ChangeItem.objects.select_related("change__environment", "change__author", "base_revision", "policy"),
        pk=item_pk,
        change=change,
    )


# --- transitions (POST forms) ---------------------------------------------------------------------------------


def _transition(request: HttpRequest, pk: int, act: Callable[[ChangeRequest], Any], success: str) -> HttpResponse:
    change = _visible_change(request, pk)
    try:
        act(change)
    except (ApplicationError, ValidationError) as exc:
        _fail(request, exc)
    else:
        messages.success(request, success.format(change=change))
    return redirect("changes:detail", pk=change.pk)


@login_required
@require_POST
def change_submit(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: change_services.change_submit(actor=signed_in_user(request), change=change),
        "Change #{change.pk} submitted for review; the plan is being computed.",
    )


@login_required
@require_POST
def change_approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: review_services.review_approve(
            reviewer=signed_in_user(request),
            change=change,
            body=request.POST.get("body", ""),
            plan_fingerprint=request.POST.get("plan_fingerprint") or None,
        ),
        "You approved change #{change.pk}.",
    )


@login_required
@require_POST
def change_request_changes(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: review_services.review_request_changes(
            reviewer=signed_in_user(request), change=change, body=request.POST.get("body", "")
        ),
        "You requested changes on change #{change.pk}.",
    )


@login_required
@require_POST
def change_reject(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: change_services.change_reject(
            actor=signed_in_user(request), change=change, reason=request.POST.get("reason", "")
        ),
        "Change #{change.pk} rejected.",
    )


@login_required
@require_POST
def change_rebase(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: change_services.change_rebase(actor=signed_in_user(request), change=change),
        "Change #{change.pk} rebased onto the current revisions; it needs its approvals again.",
    )


@login_required
@require_POST
def change_schedule(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: change_services.change_schedule(actor=signed_in_user(request), change=change),
        "Change #{change.pk} scheduled.",
    )


@login_required
@require_POST
def change_refresh_plan(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: change_services.change_refresh_plan(actor=signed_in_user(request), change=change),
        "A new plan is being computed.",
    )


@login_required
@require_POST
def change_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: lifecycle.change_withdraw(
            actor=signed_in_user(request), change=change, reason=request.POST.get("reason", "")
        ),
        "Change #{change.pk} withdrawn.",
    )


@login_required
@require_POST
def change_retry(request: HttpRequest, pk: int) -> HttpResponse:
    return _transition(
        request,
        pk,
        lambda change: lifecycle.change_retry(actor=signed_in_user(request), change=change),
        "Change #{change.pk}: retried (a new rollout attempt when nothing moved, else back to review).",
    )


@login_required
@require_POST
def change_replace_items(request: HttpRequest, pk: int) -> HttpResponse:
    text = request.POST.get("text", "")
    return _transition(
        request,
        pk,
        lambda change: lifecycle.change_items_replace(
            author=signed_in_user(request),
            change=change,
            files=[("bundle.yaml", text.encode())],
            message=request.POST.get("message", ""),
        ),
        "Change #{change.pk}: items replaced; approvals voided and the plan is being recomputed.",
    )


@login_required
@require_POST
def change_promote(request: HttpRequest, pk: int) -> HttpResponse:
    change = _visible_change(request, pk)
    try:
        promoted = promotion_services.change_promote(actor=signed_in_user(request), change=change)
    except (ApplicationError, ValidationError) as exc:
        _fail(request, exc)
        return redirect("changes:detail", pk=change.pk)
    messages.success(request, f"Change #{change.pk} promoted to {promoted.environment.name} as #{promoted.pk}.")
    return redirect("changes:detail", pk=promoted.pk)


@login_required
@require_POST
def item_guardrail_override(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    change = _visible_change(request, pk)
    item = _item_of(change, item_pk)
    guardrail = get_object_or_404(Guardrail, pk=request.POST.get("guardrail") or 0)
    try:
        change_services.change_guardrail_override(
            admin=signed_in_user(request),
            change=change,
            item=item,
            guardrail=guardrail,
            reason=request.POST.get("reason", ""),
        )
    except (ApplicationError, ValidationError) as exc:
        _fail(request, exc)
    else:
        messages.success(request, f"Guardrail “{guardrail.name}” overridden for {item.label}.")
    return redirect(f"{reverse('changes:detail', args=[change.pk])}#item-{item.pk}")


# --- comments ----------------------------------------------------------------------------------------------


@login_required
@require_safe
def item_comment_form(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """The inline form under a diff line (htmx)."""
    change = _visible_change(request, pk)
    item = _item_of(change, item_pk)
    try:
        line = int(request.GET.get("line", ""))
    except ValueError:
        line = None
    return render(request, "changes/_comment_form_row.html", {"change": change, "item": item, "line": line})


@login_required
@require_POST
def change_comment(request: HttpRequest, pk: int) -> HttpResponse:
    """A new thread (on the change, an item or a line) or a reply. htmx gets the thread back."""
    change = _visible_change(request, pk)
    item = parent = None
    if request.POST.get("item"):
        item = get_object_or_404(ChangeItem, pk=request.POST["item"], change=change)
    if request.POST.get("parent"):
        parent = get_object_or_404(ReviewComment, pk=request.POST["parent"], change=change)
    line = request.POST.get("line") or None
    try:
        comment = review_services.review_comment(
            author=signed_in_user(request),
            change=change,
            body=request.POST.get("body", ""),
            item=item,
            line=int(line) if line and str(line).isdigit() else None,
            parent=parent,
        )
    except (ApplicationError, ValidationError) as exc:
        if _is_htmx(request) and not isinstance(exc, PermissionDeniedError):
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else exc.message
            if parent is not None:  # the thread again, its reply form saying why
                return _render_thread(
                    request, change, parent.parent_id or parent.pk, as_row=False, error=message, status=400
                )
            if item is not None and line:  # the inline form again, with the text kept
                return render(
                    request,
                    "changes/_comment_form_row.html",
                    {
                        "change": change,
                        "item": item,
                        "line": line,
                        "error": message,
                        "body": request.POST.get("body", ""),
                    },
                    status=400,
                )
            return HttpResponse(
                f'<div class="alert alert-danger py-1 px-2 small mb-0" role="alert">{_escape(message)}</div>',
                status=400,
            )
        _fail(request, exc)
        return redirect("changes:detail", pk=change.pk)
    thread = comment.parent or comment
    if _is_htmx(request):
        return _render_thread(request, change, thread.pk, as_row=parent is None and comment.line is not None)
    return redirect(f"{reverse('changes:detail', args=[change.pk])}#thread-{thread.pk}")


def _escape(text: str) -> str:
    return escape(text)


def _render_thread(
    request: HttpRequest, change: ChangeRequest, thread_pk: int, *, as_row: bool, error: str = "", status: int = 200
) -> HttpResponse:
    thread = next(comment for comment in selectors.change_comments(change=change) if comment.pk == thread_pk)
    items = list(change.items.all())
    can_moderate = request.user.pk == change.author_id or approval.user_may_approve(
        user=request.user, change=change, requirements=approval.change_requirements(change, items=items)
    )
    template = "changes/_thread_row.html" if as_row else "changes/_thread.html"
    return render(
        request,
        template,
        {
            "change": change,
            "thread": thread,
            "threads": [thread],
            "can_moderate": can_moderate,
            "can_comment": True,
            "error": error,
        },
        status=status,
    )


@login_required
@require_POST
def comment_resolve(request: HttpRequest, pk: int, comment_pk: int) -> HttpResponse:
    change = _visible_change(request, pk)
    comment = get_object_or_404(ReviewComment.objects.select_related("change"), pk=comment_pk, change=change)
    try:
        resolved = review_services.comment_resolve(actor=signed_in_user(request), comment=comment)
    except (ApplicationError, ValidationError) as exc:
        _fail(request, exc)
        return redirect("changes:detail", pk=change.pk)
    if _is_htmx(request):
        return _render_thread(request, change, resolved.pk, as_row=False)
    return redirect(f"{reverse('changes:detail', args=[change.pk])}#thread-{resolved.pk}")


# --- items ----------------------------------------------------------------------------------------------------


@login_required
@require_safe
def item_card(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """One item's full card (plan diff, findings, guardrails, threads), opened from a large change's summary."""
    change = _visible_change(request, pk)
    context = change_page_context(request, change, item_pk=item_pk)
    if not context["items"]:
        raise Http404("no such item in this change")
    return render(request, "changes/_item.html", {**context, "view": context["items"][0]})


@login_required
@require_safe
def item_base_diff(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """The item against the revision it is based on (loaded on demand)."""
    change = _visible_change(request, pk)
    item = _item_of(change, item_pk)
    base = item.base_revision
    return render(
        request,
        "changes/_base_diff.html",
        {
            "item": item,
            "diff": diff_objects(base.content if base else None, item.content),
            "diff_id": f"base-diff-{item.pk}",
            "old_label": f"revision #{base.number}" if base else "nothing (new policy)",
            "new_label": "deletion" if item.content is None else "this change",
        },
    )


class ItemEditForm(forms.Form):
    text = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 24, "class": "form-control font-monospace", "spellcheck": "false"}),
        label="YAML",
    )
    message = forms.CharField(required=False, max_length=500, widget=forms.TextInput(attrs={"class": "form-control"}))


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def item_edit(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    change = _visible_change(request, pk)
    item = _item_of(change, item_pk)
    if request.user.pk != change.author_id:
        raise PermissionDenied("only the author of a change can edit its items")
    context: dict[str, Any] = {"change": change, "item": item, "security_kinds": SECURITY_KINDS}
    status = 200
    if request.method == "POST":
        form = ItemEditForm(request.POST)
        if form.is_valid():
            try:
                change_services.change_item_update(
                    author=request.user, item=item, text=form.cleaned_data["text"], message=form.cleaned_data["message"]
                )
            except DraftRejected as exc:
                context.update(rejection=exc.message, findings=exc.findings)
                status = exc.status
            except (ApplicationError, ValidationError) as exc:
                _fail(request, exc)
                return redirect("changes:detail", pk=change.pk)
            else:
                messages.success(request, f"{item.label} updated.")
                return redirect(f"{reverse('changes:detail', args=[change.pk])}#item-{item.pk}")
        else:
            status = 400
    else:
        form = ItemEditForm(initial={"text": change_services.item_text(item), "message": item.message})
    context["form"] = form
    return render(request, "changes/item_edit.html", context, status=status)


# --- approval rules -----------------------------------------------------------------------------------------


class ApprovalRuleForm(forms.Form):
    team = forms.ModelChoiceField(
        queryset=Team.objects.all(),
        required=False,
        label="Scope",
        help_text="A team's own rule applies to its namespaces and may only be stricter than the platform's.",
    )
    environment = forms.ModelChoiceField(
        queryset=Environment.objects.all(), required=False, empty_label="Every environment"
    )
    kind = forms.ChoiceField(choices=[("", "Every kind"), *PolicyKind.choices], required=False)
    required_approvals = forms.IntegerField(min_value=1, max_value=10, initial=1)
    security_approval = forms.ChoiceField(
        choices=SecurityApproval.choices, initial=SecurityApproval.DEFAULT, label="Security-team approver"
    )
    extra_production_approval = forms.BooleanField(
        required=False, initial=True, label="One more approval in production"
    )

    def __init__(self, *args: Any, teams: Any, platform: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ModelChoiceField)
        # Any team is accepted here and the service decides (403 for a team the user does not
        # administer); the list offers the user's own.
        team_field.queryset = Team.objects.all()
        offered = [(team.pk, team.name) for team in teams]
        if platform:
            offered.insert(0, ("", "Platform (every team)"))
        team_field.widget.choices = offered
        for name in ("team", "environment", "kind", "security_approval"):
            self.fields[name].widget.attrs["class"] = "form-select form-select-sm"
        self.fields["required_approvals"].widget.attrs["class"] = "form-control form-control-sm"
        self.fields["extra_production_approval"].widget.attrs["class"] = "form-check-input"


def _rule_rows(rules: list[ApprovalRule]) -> list[ApprovalRule]:
    for rule in rules:
        rule.problems = approval.rule_problems(  # type: ignore[attr-defined]  # for the template
            environment=rule.environment,
            kind=rule.kind,
            required_approvals=rule.required_approvals,
            security_approval=rule.security_approval,
            extra_production_approval=rule.extra_production_approval,
            team_id=rule.team_id,
        )
    return rules


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def approval_rules(request: HttpRequest) -> HttpResponse:
    """Platform admins set how many approvals each (environment, kind) needs; team admins add their
    teams' stricter rules. Saving an existing scope edits it."""
    platform = selectors.user_is_admin(request.user)
    teams = selectors.teams_administered(user=request.user).order_by("name")
    if not platform and not teams.exists():
        raise PermissionDenied("only platform admins and team admins may edit approval rules")
    status = 200
    if request.method == "POST":
        form = ApprovalRuleForm(request.POST, teams=teams, platform=platform)
        if form.is_valid():
            data = form.cleaned_data
            existing = ApprovalRule.objects.filter(
                team=data["team"], environment=data["environment"], kind=data["kind"] or ""
            ).first()
            try:
                review_services.approval_rule_save(actor=signed_in_user(request), rule=existing, **data)
            except (ApplicationError, ValidationError) as exc:
                _fail(request, exc)
            else:
                messages.success(request, "Approval rule saved.")
                return redirect("changes:approval-rules")
        status = 400
    else:
        form = ApprovalRuleForm(teams=teams, platform=platform)
    ordering = ("environment__order", "environment__name", "kind")
    rules = ApprovalRule.objects.select_related("environment", "team")
    team_rules = rules.filter(team__isnull=False)
    if not platform:
        team_rules = team_rules.filter(team__in=teams)
    return render(
        request,
        "changes/approval_rules.html",
        {
            "form": form,
            "platform": platform,
            "rules": _rule_rows(list(rules.filter(team__isnull=True).order_by(*ordering))),
            "team_rules": _rule_rows(list(team_rules.order_by("team__name", *ordering))),
            "default_required": approval.DEFAULT_REQUIRED_APPROVALS,
            "default_problems": approval.default_rule_problems(),
        },
        status=status,
    )


@login_required
@require_POST
def approval_rule_delete(request: HttpRequest, rule_pk: int) -> HttpResponse:
    rule = get_object_or_404(ApprovalRule.objects.select_related("team", "environment"), pk=rule_pk)
    try:
        review_services.approval_rule_delete(actor=signed_in_user(request), rule=rule)
    except (ApplicationError, ValidationError) as exc:
        _fail(request, exc)
    else:
        messages.success(request, "Approval rule deleted.")
    return redirect("changes:approval-rules")


@login_required
@require_POST
def change_rollout_options(request: HttpRequest, pk: int) -> HttpResponse:
    """Saves the author's rollout plan. htmx: the panel again with its errors (400), or the page
    reloaded once saved (approvals and state may have changed with it)."""
    change = _visible_change(request, pk)
    if not rollout_option_services.user_may_set_rollout_options(user=signed_in_user(request), change=change):
        raise PermissionDenied("only the author of a change (or an admin) can change its rollout plan")
    items = list(ChangeItem.objects.filter(change=change).order_by("position", "pk"))
    default_strategy = strategies.default_strategy([item.kind for item in items])
    form = RolloutOptionsForm(request.POST, default_strategy=default_strategy)
    page = f"{reverse('changes:detail', args=[change.pk])}#rollout-plan"
    if form.is_valid():
        options = form.options(change.rollout_options or {})
        if options is not None:
            state = change.state
            try:
                saved = rollout_option_services.change_set_rollout_options(
                    actor=signed_in_user(request), change=change, options=options
                )
            except ValidationError as exc:
                form.add_service_errors(exc)
            except ApplicationError as exc:
                messages.error(request, exc.message)
                return _to_page(request, page)
            else:
                note = " The approvals were voided; it goes back to review." if saved.state != state else ""
                messages.success(request, f"Rollout plan of change #{change.pk} saved.{note}")
                return _to_page(request, page)
    if request.headers.get("HX-Request") == "true":
        context = {"change": change, **rollout_plan_context(change=change, items=items, may_edit=True, form=form)}
        return render(request, "changes/_rollout_plan.html", context, status=400)
    context = change_page_context(request, change)
    context.update(rollout_plan_context(change=change, items=items, may_edit=True, form=form))
    return render(request, "changes/detail.html", context, status=400)


def _to_page(request: HttpRequest, url: str) -> HttpResponse:
    """Back to the change page; htmx reloads it (the form is on it, so a redirect to the same page
    with its anchor would only scroll)."""
    if request.headers.get("HX-Request") == "true":
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response
    return redirect(url)

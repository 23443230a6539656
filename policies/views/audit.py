"""The audit log: filter, page through and export (CSV / JSON, streamed) the hash-chained events,
with a banner saying whether the chain verifies. Platform admins and security-team members only."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from policies import selectors
from policies.choices import AuditAction, ChangeAuditAction
from policies.models import AuditChainHead, AuditEvent, Environment
from policies.services.audit import ChainReport, audit_verify_chain

AUDIT_PAGE_SIZE = 50
CHAIN_CACHE_SECONDS = 60
EXPORT_CHUNK = 2000
EXPORT_FIELDS = (
    "sequence",
    "created_at",
    "actor_name",
    "request_id",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "environment",
    "before",
    "after",
    "prev_hash",
    "hash",
    "hash_version",
)


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, label="Actor", help_text="Username (or its beginning).")
    obj = forms.CharField(required=False, label="Object", help_text="Searches the object's name, type or id.")
    environment = forms.ChoiceField(required=False, label="Environment")
    action = forms.ChoiceField(required=False, label="Action")
    since = forms.DateTimeField(
        required=False, label="From", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, label="Until", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = Environment.objects.order_by("order", "name").values_list("name", flat=True)
        assert isinstance(self.fields["environment"], forms.ChoiceField)
        self.fields["environment"].choices = [("", "Any environment"), *((name, name) for name in names)]
        actions = sorted({*AuditAction.values, *ChangeAuditAction.values})
        families = sorted({action.split(".")[0] + "." for action in actions})
        assert isinstance(self.fields["action"], forms.ChoiceField)
        self.fields["action"].choices = [
            ("", "Any action"),
            ("Families", [(family, f"{family}*") for family in families]),
            ("Actions", [(action, action) for action in actions]),
        ]
        for _name, field in self.fields.items():
            css = (
                "form-select form-select-sm" if isinstance(field, forms.ChoiceField) else "form-control form-control-sm"
            )
            field.widget.attrs["class"] = css

    def clean_action(self) -> str:
        return self.cleaned_data.get("action") or ""

    def filters(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "actor": data.get("actor", "").strip(),
            "obj": data.get("obj", "").strip(),
            "environment": data.get("environment") or "",
            "action": data.get("action") or "",
            "since": data.get("since"),
            "until": data.get("until"),
        }


def _require_reader(request: HttpRequest) -> None:
    if not selectors.user_may_read_audit(request.user):
        raise PermissionDenied("only platform admins and the security team may read the audit log")


def _filtered(request: HttpRequest) -> tuple[AuditFilterForm, QuerySet[AuditEvent], bool]:
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return form, AuditEvent.objects.none(), False
    filters = form.filters() if form.is_bound else {}
    # Extra filters the object links use: an exact object type and id.
    filters["object_type"] = request.GET.get("object_type", "")
    filters["object_id"] = request.GET.get("object_id", "")
    return form, selectors.audit_events(**filters), True


def chain_status(*, force: bool = False) -> ChainReport:
    """`audit_verify_chain()`, cached for a minute per chain head (a new event re-verifies)."""
    head = AuditChainHead.objects.filter(pk=1).values_list("sequence", "last_hash").first() or (0, "")
    key = f"meshgate:audit-chain:{head[0]}:{head[1]}"
    report = None if force else cache.get(key)
    if report is None:
        report = audit_verify_chain()
        cache.set(key, report, CHAIN_CACHE_SECONDS)
    return report


@login_required
@require_safe
def audit_log(request: HttpRequest) -> HttpResponse:
    _require_reader(request)
    form, events, valid = _filtered(request)
    page = Paginator(events.select_related(None).defer("before", "after"), AUDIT_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("verify", None)
    return render(
        request,
        "audit/log.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "chain": chain_status(force=request.GET.get("verify") == "1"),
            "checked_at": timezone.now(),
        },
        status=200 if valid else 400,
    )


def _row(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in EXPORT_FIELDS}


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_rows(events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(EXPORT_FIELDS)
    for event in events.iterator(chunk_size=EXPORT_CHUNK):
        row = _row(event)
        yield writer.writerow(
            [
                json.dumps(row[name], cls=DjangoJSONEncoder, sort_keys=True)
                if name in ("before", "after")
                else row[name].isoformat()
                if isinstance(row[name], dt.datetime)
                else row[name]
                for name in EXPORT_FIELDS
            ]
        )


def _json_rows(events: QuerySet[AuditEvent]) -> Iterator[str]:
    yield "["
    first = True
    for event in events.iterator(chunk_size=EXPORT_CHUNK):
        yield ("" if first else ",") + "\n" + json.dumps(_row(event), cls=DjangoJSONEncoder, sort_keys=True)
        first = False
    yield "\n]\n"


@login_required
@require_safe
def audit_export(request: HttpRequest, fmt: str) -> HttpResponse | StreamingHttpResponse:
    """The filtered events, oldest first, streamed (any number of rows in constant memory)."""
    _require_reader(request)
    if fmt not in ("csv", "json"):
        raise Http404("export as .csv or .json")
    form, events, valid = _filtered(request)
    if not valid:
        return HttpResponse(
            "invalid filters: "
            + "; ".join(f"{name}: {' '.join(str(error) for error in errors)}" for name, errors in form.errors.items()),
            status=400,
            content_type="text/plain",
        )
    events = events.order_by("sequence")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_rows(events), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(_json_rows(events), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="meshgate-audit-{stamp}.{fmt}"'
    return response

"""Pages for drafts: the list, one draft (findings, diff, YAML), bundle upload, and the policy
page's "Delete…" action. Views read through selectors and call one service each."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from policies import selectors
from policies.bundles import MAX_BUNDLE_FILES
from policies.choices import SECURITY_KINDS
from policies.exceptions import ApplicationError, ConflictError, DraftRejected, PermissionDeniedError
from policies.models import Draft, Environment, Policy
from policies.services.drafts import draft_delete_policy, draft_discard, drafts_from_bundle
from policies.validation.limits import MAX_BUNDLE_BYTES, MIB
from portal.http import signed_in_user

MAX_UPLOAD_REQUEST_BYTES = MAX_BUNDLE_BYTES + 2 * MIB
PASTED_FILE_NAME = "pasted.yaml"


def _optional_url(name: str, *args: Any) -> str | None:
    """A URL of a page another part of the portal provides, or None while it does not exist."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return None


def policy_draft_actions(request: HttpRequest, policy: Policy) -> dict[str, Any]:
    """Context for the policy page's Edit and Delete… buttons (only for those who may draft)."""
    may_author = selectors.user_may_author(
        user=request.user, environment=policy.environment, namespace=policy.namespace
    )
    edit_url = _optional_url("editor:policy-edit", policy.pk) if may_author else None
    return {
        "can_edit": edit_url is not None,
        "edit_url": edit_url,
        "can_delete": may_author and policy.current_revision_id is not None,
    }


# --- list and detail ---------------------------------------------------------------------------


@login_required
@require_safe
def drafts(request: HttpRequest) -> HttpResponse:
    rows = (
        selectors.draft_list(user=request.user)
        .defer("content", "source_text", "findings", "base_revision__content", "policy__current_revision__content")
        .order_by("environment__order", "environment__name", "-updated_at", "pk")
    )
    return render(request, "drafts/list.html", {"drafts": rows, "security_kinds": SECURITY_KINDS})


def _visible_draft(request: HttpRequest, pk: int) -> Draft:
    """The draft if the user may open it; otherwise 404, so that its existence does not leak."""
    return get_object_or_404(selectors.draft_visible_list(user=request.user), pk=pk)


@login_required
@require_safe
def draft_detail(request: HttpRequest, pk: int) -> HttpResponse:
    draft = _visible_draft(request, pk)
    report = selectors.draft_validation(draft=draft)
    findings = [finding.as_dict() for finding in report.findings] if report is not None else []
    current = draft.policy.current_revision if draft.policy is not None else None
    is_author = draft.author_id == request.user.pk
    return render(
        request,
        "drafts/detail.html",
        {
            "draft": draft,
            "findings": findings,
            "error_count": sum(1 for finding in findings if finding["level"] == "error"),
            "warning_count": sum(1 for finding in findings if finding["level"] == "warning"),
            "diff": selectors.draft_diff(draft=draft),
            "diff_old_label": f"revision #{current.number}" if current else "nothing (new policy)",
            "diff_new_label": "deletion" if draft.content is None else "draft",
            "current_revision": current,
            "stale": (current.pk if current else None) != draft.base_revision_id,
            "edit_url": _optional_url("editor:draft-edit", draft.pk) if is_author else None,
            "can_discard": is_author
            or selectors.user_may_manage_drafts(
                user=request.user, environment=draft.environment, namespace=draft.namespace
            ),
            "security_kinds": SECURITY_KINDS,
        },
    )


@login_required
@require_POST
def draft_discard_view(request: HttpRequest, pk: int) -> HttpResponse:
    draft = _visible_draft(request, pk)
    try:
        draft_discard(actor=signed_in_user(request), draft=draft)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    messages.success(request, f"Draft for {draft.kind} {draft.namespace}/{draft.name} discarded.")
    return redirect("policies:drafts")


# --- deleting a policy -------------------------------------------------------------------------


@login_required
@require_POST
def policy_delete_draft(request: HttpRequest, pk: int) -> HttpResponse:
    policy = get_object_or_404(selectors.policy_list(user=request.user), pk=pk)
    message = request.POST.get("message", "").strip()[:500]
    try:
        draft = draft_delete_policy(author=signed_in_user(request), policy=policy, message=message)
    except PermissionDeniedError as exc:
        raise PermissionDenied(exc.message) from exc
    except ConflictError as exc:
        messages.error(request, exc.message)
        return redirect("policies:policy-detail", pk=policy.pk)
    messages.success(request, f"Deletion of {policy.kind} {policy.namespace}/{policy.name} drafted.")
    return redirect("policies:draft-detail", pk=draft.pk)


# --- bundle upload -----------------------------------------------------------------------------


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> Any:
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return [super().clean(data, initial)] if data else []


class BundleUploadForm(forms.Form):
    environment = forms.ModelChoiceField(queryset=Environment.objects.none(), empty_label=None)
    files = MultipleFileField(  # type: ignore[assignment]  # a declared field, not BaseForm.files
        required=False,
        widget=MultipleFileInput(attrs={"accept": ".yaml,.yml,.json,.tar,.tgz,.gz,.zip", "class": "form-control"}),
        help_text="Manifests (*.yaml, *.yml, *.json) or a .tar, .tar.gz/.tgz or .zip of a folder of them.",
    )
    text = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12, "class": "form-control font-monospace", "spellcheck": "false"}),
        help_text="Or paste YAML here; separate objects with ---.",
    )
    message = forms.CharField(required=False, max_length=500, widget=forms.TextInput(attrs={"class": "form-control"}))
    namespace = forms.RegexField(
        regex=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        required=False,
        max_length=63,
        widget=forms.TextInput(attrs={"class": "form-control", "placeholder": "e.g. bookinfo"}),
        help_text="For objects without metadata.namespace, as kubectl -n would apply them.",
        error_messages={"invalid": "Not a namespace: lower-case letters, digits and '-'."},
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.fields["environment"], forms.ModelChoiceField)
        self.fields["environment"].queryset = selectors.environment_list(user=user).only("name", "display_name")
        self.fields["environment"].widget.attrs["class"] = "form-select"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # Form.clean answers cleaned_data
        files = cleaned.get("files") or []
        if not files and not cleaned.get("text", "").strip():
            raise forms.ValidationError("Choose one or more files, or paste YAML.")
        if len(files) > MAX_BUNDLE_FILES:
            self.add_error("files", f"At most {MAX_BUNDLE_FILES} files; upload an archive instead.")
        total = sum(upload.size or 0 for upload in files) + len(cleaned.get("text", "").encode())
        if total > MAX_BUNDLE_BYTES:
            raise forms.ValidationError(
                f"The bundle is {total / MIB:.1f} MiB, more than the {MAX_BUNDLE_BYTES // MIB} MiB accepted: "
                "split it into smaller ones."
            )
        return cleaned

    def bundle_files(self) -> list[tuple[str, bytes]]:
        files = [(upload.name, upload.read()) for upload in self.cleaned_data["files"]]
        if self.cleaned_data["text"].strip():
            files.append((PASTED_FILE_NAME, self.cleaned_data["text"].encode()))
        return files


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def draft_upload(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {"limit_mib": MAX_BUNDLE_BYTES // MIB, "max_files": MAX_BUNDLE_FILES}
    if request.method != "POST":
        initial = {"environment": selectors.environment_list(user=request.user).first()}
        context["form"] = BundleUploadForm(user=signed_in_user(request), initial=initial)
        return render(request, "drafts/upload.html", context)

    too_large = _too_large(request)
    if too_large:
        context["form"] = BundleUploadForm(user=signed_in_user(request))
        context["form_error"] = too_large
        return render(request, "drafts/upload.html", context, status=413)
    form = BundleUploadForm(request.POST, request.FILES, user=signed_in_user(request))
    context["form"] = form
    if not form.is_valid():
        return render(request, "drafts/upload.html", context, status=400)
    try:
        saved = drafts_from_bundle(
            author=signed_in_user(request),
            environment=form.cleaned_data["environment"],
            files=form.bundle_files(),
            message=form.cleaned_data["message"],
            default_namespace=form.cleaned_data["namespace"],
        )
    except DraftRejected as exc:
        context.update(rejection=exc.message, findings=exc.findings)
        return render(request, "drafts/upload.html", context, status=exc.status)
    except ApplicationError as exc:
        context["form_error"] = exc.message
        return render(request, "drafts/upload.html", context, status=exc.status)
    count = len(saved)
    messages.success(
        request,
        f"{count} draft{'s' if count != 1 else ''} saved from the bundle for {form.cleaned_data['environment'].name}.",
    )
    return redirect("policies:drafts")


def _too_large(request: HttpRequest) -> str:
    """A message when the upload is over the limit, checked before the body is read."""
    try:
        size = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        size = 0
    if size > MAX_UPLOAD_REQUEST_BYTES:
        return (
            f"The upload is {size / MIB:.1f} MiB, more than the {MAX_BUNDLE_BYTES // MIB} MiB accepted: "
            "split the bundle into smaller ones."
        )
    try:
        request.POST  # noqa: B018 - parses the body now, so that its limits answer here
    except RequestDataTooBig:
        return "The pasted text is too large for a form: upload it as a file instead."
    except (TooManyFilesSent, TooManyFieldsSent):
        return "Too many files in one upload: put the manifests in one archive (.tar.gz or .zip) instead."
    return ""

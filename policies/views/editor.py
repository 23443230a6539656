"""The YAML editor (live validation and schema completion in the browser) and the guided wizards.

Views are interfaces: reads go through `policies.selectors` and `policies.live`, saving through
`policies.services.drafts`, YAML generation through `policies.wizards`.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import yaml
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_http_methods, require_safe

from policies import cluster as kube
from policies import live, selectors, wizards
from policies.choices import SECURITY_KINDS, PolicyKind
from policies.exceptions import ApplicationError, DraftRejected
from policies.models import Draft, Environment, Policy
from policies.services.drafts import draft_save, drafts_from_bundle
from policies.validation.schema import environment_schemas
from portal.http import signed_in_user

PREFILL_SESSION_KEY = "editor_prefill"
PREFILL_KEEP = 5
SCHEMA_MAX_AGE_SECONDS = 300
MESSAGE_MAX_LENGTH = 500
SAVE_ONE, SAVE_BUNDLE = "draft", "bundle"


# --- editor pages -----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def new(request: HttpRequest) -> HttpResponse:
    """A new object of `kind` in `environment`, from a skeleton or from a wizard's output."""
    environment = _environment_from_query(request)
    kind = request.GET.get("kind") or PolicyKind.VIRTUAL_SERVICE
    if kind not in PolicyKind.values:
        raise Http404(f"unknown kind {kind!r}")
    prefill = _prefill(request, request.GET.get("prefill", ""))
    namespaces = live.owned_namespaces(user=request.user, environment=environment)
    namespace = request.GET.get("namespace") or (prefill or {}).get("namespace") or next(iter(namespaces), "")
    if not namespace or not selectors.user_may_author(user=request.user, environment=environment, namespace=namespace):
        where = f"the namespace {namespace}" if namespace else "any namespace"
        raise PermissionDenied(f"you are not an author in {where} of {environment.name}")
    save_as = (prefill or {}).get("save_as", SAVE_ONE)
    wizard = wizards.WIZARDS.get((prefill or {}).get("wizard", ""))
    # A wizard may have rewritten an existing policy: say so, and show where it came from.
    policy = None
    if prefill and prefill.get("name"):
        policy = (
            selectors.policy_list(user=request.user)
            .filter(environment=environment, kind=kind, namespace=namespace, name=prefill["name"])
            .first()
        )
    context = {
        "mode": "new",
        "environment": environment,
        "kind": kind,
        "namespace": namespace,
        "namespaces": namespaces,
        "policy": policy,
        "name": (prefill or {}).get("name", ""),
        "save_as": save_as,
        "wizard": wizard,
        "cancel_url": (
            f"{reverse('editor:wizard', args=[wizard.slug])}?{urlencode({'environment': environment.name})}"
            if wizard
            else reverse("policies:catalog")
        ),
    }
    if request.method == "POST":
        return _save(request, context, environment=environment, draft=None)
    if prefill:
        text = prefill["text"]
    else:
        snapshot = live.live_snapshot(user=request.user, environment=environment)
        service = snapshot.service(f"{namespace}/{request.GET.get('service', '')}") or next(
            iter(snapshot.services_in(namespace)), None
        )
        text = wizards.to_yaml([wizards.skeleton(kind, namespace=namespace, service=service)])
    return _render_editor(request, context, text=text)


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def policy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """A policy's current revision, or the user's draft of it when there is one."""
    policy = get_object_or_404(selectors.policy_list(user=request.user), pk=pk)
    environment = policy.environment
    if not selectors.user_may_author(user=request.user, environment=environment, namespace=policy.namespace):
        raise PermissionDenied(f"you are not an author in the namespace {policy.namespace} of {environment.name}")
    draft = (
        selectors.draft_list(user=request.user, environment=environment)
        .filter(kind=policy.kind, namespace=policy.namespace, name=policy.name)
        .first()
    )
    context = {
        "mode": "policy",
        "environment": environment,
        "kind": policy.kind,
        "namespace": policy.namespace,
        "policy": policy,
        "draft": draft,
        "save_as": SAVE_ONE,
        "cancel_url": reverse("policies:policy-detail", args=[policy.pk]),
    }
    if request.method == "POST":
        return _save(request, context, environment=environment, draft=draft)
    if draft is not None and draft.source_text:
        text = draft.source_text
    elif policy.current_revision is not None:
        text = document_yaml(policy.current_revision.content)
    else:
        text = wizards.to_yaml([_identity_only(policy)])
    return _render_editor(request, context, text=text, message=draft.message if draft else "")


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def draft_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """One of the user's own drafts, as its author wrote it."""
    draft = get_object_or_404(selectors.draft_list(user=request.user), pk=pk)
    context = {
        "mode": "draft",
        "environment": draft.environment,
        "kind": draft.kind,
        "namespace": draft.namespace,
        "policy": draft.policy,
        "draft": draft,
        "save_as": SAVE_ONE,
        "cancel_url": _draft_url(draft),
    }
    if request.method == "POST":
        return _save(request, context, environment=draft.environment, draft=draft)
    text = draft.source_text or (document_yaml(draft.content) if draft.content else "")
    return _render_editor(request, context, text=text, message=draft.message)


def _save(
    request: HttpRequest, context: dict[str, Any], *, environment: Environment, draft: Draft | None
) -> HttpResponse:
    text = request.POST.get("text", "")
    message = request.POST.get("message", "").strip()[:MESSAGE_MAX_LENGTH]
    bundle = request.POST.get("save_as") == SAVE_BUNDLE and draft is None
    try:
        if bundle:
            drafts = drafts_from_bundle(
                author=signed_in_user(request),
                environment=environment,
                files=[("editor.yaml", text.encode())],
                message=message,
            )
        else:
            saved = draft_save(
                author=signed_in_user(request), environment=environment, text=text, draft=draft, message=message
            )
    except DraftRejected as exc:
        context["save_as"] = SAVE_BUNDLE if bundle else context["save_as"]
        return _render_editor(
            request, context, text=text, message=message, findings=exc.findings, error=exc.message, status=exc.status
        )
    except ApplicationError as exc:
        return _render_editor(request, context, text=text, message=message, error=exc.message, status=exc.status)
    if bundle:
        messages.success(request, f"Saved {len(drafts)} drafts.")
        return redirect(_drafts_url() if len(drafts) != 1 else _draft_url(drafts[0]))
    errors = sum(1 for finding in saved.report.findings if finding.level == "error")
    if errors:
        messages.warning(request, f"Draft saved with {errors} error{'s' if errors != 1 else ''} to fix before review.")
    else:
        messages.success(request, "Draft saved.")
    return redirect(_draft_url(saved.draft))


def _render_editor(
    request: HttpRequest,
    context: dict[str, Any],
    *,
    text: str,
    message: str = "",
    findings: list[dict] | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    environment: Environment = context["environment"]
    schema_template = reverse("editor:schema", args=[environment.name, "KIND"]).replace("KIND.json", "__KIND__.json")
    context.update(
        text=text,
        message=message,
        findings=findings or [],
        error=error,
        validate_url=_validate_url(),
        schema_url_template=schema_template,
        security_kinds=SECURITY_KINDS,
        file_name=_file_name(context),
    )
    response = render(request, "editor/editor.html", context, status=status)
    patch_cache_control(response, private=True, no_store=True)
    return response


def _file_name(context: dict[str, Any]) -> str:
    policy: Policy | None = context.get("policy")
    draft: Draft | None = context.get("draft")
    target = draft or policy
    if target is not None:
        return f"{target.namespace}/{target.name}.yaml"
    if context.get("name"):
        return f"{context['namespace']}/{context['name']}.yaml"
    return f"{context['namespace']}/new-{context['kind'].lower()}.yaml"


def _identity_only(policy: Policy) -> dict[str, Any]:
    return {
        "apiVersion": kube.kind_info(policy.kind).api_version,
        "kind": policy.kind,
        "metadata": {"name": policy.name, "namespace": policy.namespace},
        "spec": {},
    }


def document_yaml(content: dict[str, Any]) -> str:
    """A stored object as YAML in the order people write it (apiVersion, kind, metadata, spec)."""
    return yaml.safe_dump(wizards.readable_order(content, top=True), sort_keys=False, allow_unicode=True)


def _validate_url() -> str:
    for name in ("api:validate", "api:validate-text"):
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return "/api/v1/validate"


def _draft_url(draft: Draft) -> str:
    try:
        return reverse("policies:draft-detail", args=[draft.pk])
    except NoReverseMatch:  # the drafts pages are not wired yet
        return reverse("editor:draft-edit", args=[draft.pk])


def _drafts_url() -> str:
    try:
        return reverse("policies:drafts")
    except NoReverseMatch:
        return reverse("policies:catalog")


def _environment_from_query(request: HttpRequest) -> Environment:
    """`?environment=<name>`; without one, the first environment where the user owns a namespace."""
    visible = selectors.environment_list(user=request.user)
    name = request.GET.get("environment", "")
    if name:
        return get_object_or_404(visible, name=name)
    owned = visible.filter(namespace_owners__team__memberships__user=signed_in_user(request)).distinct().first()
    environment = owned or visible.first()
    if environment is None:
        raise Http404("no environment is configured yet")
    return environment


# --- prefill (a wizard's output handed to the editor) -------------------------------------------


def _store_prefill(request: HttpRequest, payload: dict[str, Any]) -> str:
    token = secrets.token_urlsafe(9)
    stored = dict(request.session.get(PREFILL_SESSION_KEY, {}))
    stored[token] = payload
    request.session[PREFILL_SESSION_KEY] = dict(list(stored.items())[-PREFILL_KEEP:])
    return token


def _prefill(request: HttpRequest, token: str) -> dict[str, Any] | None:
    """Kept until it falls out of the last few, so that reloading the editor page keeps the text."""
    if not token:
        return None
    return request.session.get(PREFILL_SESSION_KEY, {}).get(token)


# --- schema for completion --------------------------------------------------------------------

_METADATA_SCHEMA = {
    "type": "object",
    "description": "Standard object metadata.",
    "properties": {
        "name": {"type": "string", "description": "The object's name, unique per kind in its namespace."},
        "namespace": {"type": "string", "description": "The namespace the object lives in."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Labels (key: value)."},
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Annotations (key: value).",
        },
    },
}


@login_required
@require_safe
def schema(request: HttpRequest, environment: str, kind: str) -> JsonResponse:
    """The kind's CRD schema as the environment's cluster serves it, with apiVersion/kind/metadata added."""
    env = get_object_or_404(selectors.environment_list(user=request.user), name=environment)
    if kind not in PolicyKind.values:
        raise Http404(f"unknown kind {kind!r}")
    try:
        crd_schema = environment_schemas(env).get(kind)
    except kube.NotFound:
        return JsonResponse({"code": "not_found", "message": f"{env.name} serves no {kind} CRD"}, status=404)
    except kube.KubernetesError as exc:
        return JsonResponse({"code": "cluster_error", "message": f"{env.name}: {exc.message}"}, status=502)
    properties = dict(crd_schema.get("properties") or {})
    properties.pop("status", None)
    info = kube.kind_info(kind)
    root = {
        **{k: v for k, v in crd_schema.items() if k != "properties"},
        "properties": {
            "apiVersion": {
                "type": "string",
                "enum": list(info.api_versions),
                "description": "API group and version (the first is preferred).",
            },
            "kind": {"type": "string", "enum": [kind], "description": "The object's kind."},
            "metadata": _METADATA_SCHEMA,
            **properties,
        },
    }
    response = JsonResponse({"environment": env.name, "kind": kind, "apiVersion": info.api_version, "schema": root})
    patch_cache_control(response, private=True, max_age=SCHEMA_MAX_AGE_SECONDS)
    return response


# --- wizards ----------------------------------------------------------------------------------


@login_required
@require_safe
def wizard_index(request: HttpRequest) -> HttpResponse:
    environment = _environment_from_query(request)
    return render(
        request,
        "editor/wizard_index.html",
        {
            "environment": environment,
            "environments": selectors.environment_list(user=request.user).only("name", "is_production", "order"),
            "wizards": list(wizards.WIZARDS.values()),
            "namespaces": live.owned_namespaces(user=request.user, environment=environment),
            "security_kinds": SECURITY_KINDS,
            "kinds": PolicyKind.choices,
        },
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def wizard(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the form, pre-filled from the live cluster. POST: the YAML; with `preview`, only the
    preview fragment (htmx), otherwise the editor opens with it."""
    spec = wizards.WIZARDS.get(slug)
    if spec is None:
        raise Http404(f"no wizard {slug!r}")
    environment = _environment_from_query(request)
    snapshot = live.live_snapshot(user=request.user, environment=environment)
    if not snapshot.namespaces:
        raise PermissionDenied(f"you are not an author in any namespace of {environment.name}")
    preview = request.method == "POST" and request.POST.get("preview") == "1"
    if request.method == "POST":
        form = spec.form_class(request.POST, snapshot=snapshot)
    else:
        initial = {key: request.GET[key] for key in ("service", "scope") if request.GET.get(key)}
        form = spec.form_class(initial=initial, snapshot=snapshot)
    valid = request.method == "POST" and form.is_valid()
    generated = form.to_yaml() if valid else ""
    if preview:
        # Always 200: the fragment shows the problems; the page is not an error while typing.
        return render(request, "editor/_wizard_preview.html", {"form": form, "generated": generated})
    if valid:
        documents = form.documents()
        token = _store_prefill(
            request,
            {
                "text": generated,
                "namespace": form.namespace,
                "name": documents[0]["metadata"]["name"],
                "wizard": slug,
                "save_as": SAVE_BUNDLE if len(documents) > 1 else SAVE_ONE,
            },
        )
        query = {
            "environment": environment.name,
            "kind": documents[0]["kind"],
            "namespace": form.namespace,
            "prefill": token,
        }
        return redirect(f"{reverse('editor:new')}?{urlencode(query)}")
    context = {
        "wizard": spec,
        "form": form,
        "environment": environment,
        "environments": selectors.environment_list(user=request.user).only("name", "is_production", "order"),
        "snapshot": snapshot,
        "security_kinds": SECURITY_KINDS,
    }
    fragment = _wants_fragment(request)
    template = "editor/_wizard_form.html" if fragment else "editor/wizard.html"
    response = render(request, template, context, status=400 if request.method == "POST" else 200)
    if fragment:
        response["HX-Trigger-After-Settle"] = "wizard-refreshed"  # the preview follows the new fields
    patch_vary_headers(response, ["HX-Request"])
    return response


def _wants_fragment(request: HttpRequest) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )

"""Drafts: an author's proposed content for one policy, saved from text, a bundle or a deletion.

Every function here is one transaction that writes its audit row. Validation (which may read the
cluster) runs before the transaction opens. What blocks a save: a parse-layer error (syntax, size,
unsupported kind, bad apiVersion, name or namespace, duplicates), a text that is not exactly one
object, or an author without a role in the team owning the namespace. Schema and cross-resource
findings do not block: they are stored with the draft and shown to the author.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from policies import selectors
from policies.bundles import expand_bundle
from policies.choices import AuditAction, DraftOperation, GuardrailEnforcement
from policies.exceptions import ConflictError, DraftRejected, PermissionDeniedError
from policies.guardrails.engine import guardrails_evaluate
from policies.models import Draft, Environment, Guardrail, NamespaceOwnership, Policy
from policies.normalize import content_hash, normalize_object
from policies.services.audit import audit_record
from policies.validation import Finding, Layer, Level
from policies.validation.codes import finding as catalogued
from policies.validation.parse import ParsedDocument
from policies.validation.service import ValidationReport, validate_bundle, validate_text

# Finding codes of drafts (catalogued in policies.validation.codes).
NOT_AN_AUTHOR = "MG0110"  # not an author in the team owning the namespace
IDENTITY_CHANGED = "MG0111"  # an existing draft's text now names another object
PERMISSION_LAYER = Layer.PERMISSION


@dataclass(frozen=True)
class DraftSaveResult:
    draft: Draft
    report: ValidationReport


# --- saving text -------------------------------------------------------------------------------


def draft_save(
    *,
    author: User,
    environment: Environment,
    text: str,
    draft: Draft | None = None,
    message: str | None = None,
) -> DraftSaveResult:
    """Creates or updates the author's draft for the one object in `text`.

    Without `draft`, the author's existing draft for the same object (if any) is updated. With
    `draft`, the text must describe the same object in the same environment, and only the draft's
    author may save it. `message=None` keeps the draft's message. Raises `DraftRejected` (400,
    or 403 for a namespace the author may not draft in) and stores nothing.
    """
    if draft is not None and draft.author_id != author.pk:
        raise PermissionDeniedError("only the author of a draft can change it")
    if draft is not None and draft.environment_id != environment.pk:
        raise DraftRejected(
            f"this draft is for environment {draft.environment.name}, not {environment.name}: "
            "start a new draft for another environment",
            findings=[],
        )
    report = validate_text(environment=environment, text=text)
    blocking = blocking_findings(report.findings)
    if blocking:
        raise DraftRejected(
            _rejection_message(blocking, "the text cannot be saved as a draft"), findings=_dicts(blocking)
        )
    if len(report.documents) != 1:
        lines = ", ".join(str(doc.start_line) for doc in report.documents)
        raise DraftRejected(
            f"a draft holds exactly one object, and this text holds {len(report.documents)} (at lines {lines}): "
            "save each object as its own draft, or upload the text as a bundle",
            findings=[],
        )
    (document,) = report.documents
    if draft is not None and (draft.kind, draft.namespace, draft.name) != document.identity:
        finding = catalogued(
            IDENTITY_CHANGED,
            f"this draft is for {draft.kind} {draft.namespace}/{draft.name}, but the text describes "
            f"{document.label}: a draft keeps its object; start a new draft for another one",
            **document.at(_identity_path(draft, document)),
        )
        raise DraftRejected(finding.message, findings=[finding.as_dict()])
    denied = permission_findings(author=author, environment=environment, documents=[document])
    if denied:
        raise DraftRejected(denied[0].message, findings=_dicts(denied), status=403, code="permission_denied")

    with transaction.atomic():
        saved = _upsert(
            author=author,
            environment=environment,
            document=document,
            source=SourceText(text),
            findings=report.findings,
            message=message,
            draft=draft,
        )
    return DraftSaveResult(draft=saved, report=report)


def draft_update_message(*, author: User, draft: Draft, message: str) -> Draft:
    """Changes only the draft's message."""
    if draft.author_id != author.pk:
        raise PermissionDeniedError("only the author of a draft can change it")
    with transaction.atomic():
        locked = _lock(draft)
        if locked.message == message:
            return locked
        before = {"message": locked.message}
        locked.message = message
        locked.updated_at = timezone.now()
        locked.save(update_fields=["message", "updated_at"])
        audit_record(
            action=AuditAction.DRAFT_UPDATED,
            actor=author,
            obj=locked,
            environment=locked.environment.name,
            before=before,
            after={"message": message},
        )
    return locked


# --- deleting a policy -------------------------------------------------------------------------


def draft_delete_policy(*, author: User, policy: Policy, message: str = "") -> Draft:
    """A draft that deletes `policy`. Idempotent for an existing deletion draft; refused (409) when
    the author already drafts other content for the policy."""
    environment = policy.environment
    if not selectors.user_may_author(user=author, environment=environment, namespace=policy.namespace):
        raise PermissionDeniedError(_not_author_message(environment, policy.namespace))
    if policy.current_revision_id is None:
        raise ConflictError(f"{policy} has no revision: there is nothing to delete")
    with transaction.atomic():
        existing = (
            Draft.objects.select_for_update()
            .filter(
                author=author, environment=environment, kind=policy.kind, namespace=policy.namespace, name=policy.name
            )
            .first()
        )
        if existing is not None and existing.operation != DraftOperation.DELETE:
            raise ConflictError(
                f"you already have a draft that changes {policy.kind} {policy.namespace}/{policy.name}: "
                "discard it before drafting the deletion"
            )
        now = timezone.now()
        if existing is not None:
            before = _snapshot(existing)
            existing.message = message or existing.message
            existing.updated_at = now
            existing.save(update_fields=["message", "updated_at"])
            draft, action = existing, AuditAction.DRAFT_UPDATED
        else:
            before = None
            draft = Draft.objects.create(
                environment=environment,
                kind=policy.kind,
                namespace=policy.namespace,
                name=policy.name,
                policy=policy,
                operation=DraftOperation.DELETE,
                content=None,
                source_text="",
                content_hash="",
                base_revision_id=policy.current_revision_id,
                author=author,
                message=message,
                created_at=now,
                updated_at=now,
            )
            action = AuditAction.DRAFT_CREATED
        audit_record(
            action=action, actor=author, obj=draft, environment=environment.name, before=before, after=_snapshot(draft)
        )
    return draft


def draft_discard(*, actor: User, draft: Draft) -> None:
    """Deletes a draft: its author, an admin of the owning team, or a superuser."""
    if draft.author_id != actor.pk and not selectors.user_may_manage_drafts(
        user=actor, environment=draft.environment, namespace=draft.namespace
    ):
        raise PermissionDeniedError("only the author of a draft (or an admin of the owning team) can discard it")
    with transaction.atomic():
        locked = Draft.objects.select_for_update().filter(pk=draft.pk).first()
        if locked is None:
            return  # already discarded: nothing to do
        audit_record(
            action=AuditAction.DRAFT_DISCARDED,
            actor=actor,
            obj=locked,
            environment=draft.environment.name,
            before=_snapshot(locked),
        )
        locked.delete()


# --- bundles -----------------------------------------------------------------------------------


def drafts_from_bundle(
    *,
    author: User,
    environment: Environment,
    files: list[tuple[str, bytes]],
    message: str = "",
    default_namespace: str = "",
) -> list[Draft]:
    """One draft per object of the bundle (plain files and archives), all or nothing.

    `default_namespace` is the namespace of objects without metadata.namespace (`kubectl -n`); their
    drafts hold it, written out.

    Any parse-layer error, refused archive or namespace the author may not draft in, in any
    document, raises `DraftRejected` (code `bundle_rejected`) listing every such finding with its
    file, document and line, and nothing is stored. Otherwise each object updates the author's
    draft for it, or creates one, in one transaction.
    """
    report, objects = bundle_objects(
        author=author, environment=environment, files=files, default_namespace=default_namespace
    )
    drafts = []
    with transaction.atomic():
        for document, source in objects:
            drafts.append(
                _upsert(
                    author=author,
                    environment=environment,
                    document=document,
                    source=source,
                    findings=report.for_document(document),
                    message=message or None,
                    draft=None,
                )
            )
    return drafts


def bundle_objects(
    *, author: User, environment: Environment, files: list[tuple[str, bytes]], default_namespace: str = ""
) -> tuple[ValidationReport, list[tuple[ParsedDocument, SourceText]]]:
    """The bundle's objects (plain files and archives) with their text and where it stands in the
    uploaded file, refused as a whole (`DraftRejected`, code `bundle_rejected`) on any parse-layer
    error, refused archive or namespace the author may not draft in."""
    expanded, archive_findings = expand_bundle(files)
    report = (
        validate_bundle(environment=environment, files=expanded, default_namespace=default_namespace)
        if (expanded or not archive_findings)
        else None
    )
    documents = report.documents if report is not None else []
    blocking = [*archive_findings, *blocking_findings(report.findings if report is not None else [])]
    blocking += permission_findings(author=author, environment=environment, documents=documents)
    if blocking or report is None:
        only_permission = bool(blocking) and all(finding.layer == PERMISSION_LAYER for finding in blocking)
        raise DraftRejected(
            _rejection_message(blocking, "the bundle was refused and nothing was stored"),
            findings=_dicts(blocking),
            status=403 if only_permission else 400,
            code="bundle_rejected",
        )
    texts = _decoded(expanded)
    lines = {name: text.splitlines(keepends=True) for name, text in texts.items()}  # once per file, not per object
    per_file: dict[str, int] = {}
    for document in documents:
        per_file[document.file] = per_file.get(document.file, 0) + 1
    return report, [
        (
            document,
            _document_text(
                document, texts[document.file], alone=per_file[document.file] == 1, lines=lines[document.file]
            ),
        )
        for document in documents
    ]


# --- shared -----------------------------------------------------------------------------------


def blocking_findings(findings: Iterable[Finding]) -> list[Finding]:
    """What stops a draft from being stored: errors of the parse layer."""
    return [finding for finding in findings if finding.layer == Layer.PARSE and _is_error(finding)]


def workflow_findings(*, author: User, environment: Environment, documents: Iterable[ParsedDocument]) -> list[Finding]:
    """What a change of these objects would meet beyond their content: the author's role in each
    namespace, and each guardrail that fails (blocking ones as errors, advisory ones as warnings)."""
    documents = [document for document in documents if document.checkable]
    findings = permission_findings(author=author, environment=environment, documents=documents)
    guardrails = list(Guardrail.objects.filter(enabled=True))
    for document in documents:
        for result in guardrails_evaluate(environment=environment, objects=[document.obj], guardrails=guardrails):
            if result.passed:
                continue
            advisory = result.enforcement == GuardrailEnforcement.ADVISORY
            findings.append(
                catalogued(
                    "MG1502" if advisory else "MG1501",
                    f"guardrail “{result.name}” ({GuardrailEnforcement(result.enforcement).label.lower()}): "
                    f"{result.message or result.error}",
                    **document.at(""),
                )
            )
    return findings


def permission_findings(
    *, author: User, environment: Environment, documents: Iterable[ParsedDocument]
) -> list[Finding]:
    """One finding per object in a namespace the author may not draft in."""
    allowed: dict[str, bool] = {}
    findings = []
    for document in documents:
        if not document.checkable:  # its identity is unusable: the parse layer already said why
            continue
        namespace = document.namespace
        if namespace not in allowed:
            allowed[namespace] = selectors.user_may_author(user=author, environment=environment, namespace=namespace)
        if not allowed[namespace]:
            findings.append(
                catalogued(
                    NOT_AN_AUTHOR, _not_author_message(environment, namespace), **document.at("metadata.namespace")
                )
            )
    return findings


def _upsert(
    *,
    author: User,
    environment: Environment,
    document: ParsedDocument,
    source: SourceText,
    findings: Iterable[Finding],
    message: str | None,
    draft: Draft | None,
) -> Draft:
    kind, namespace, name = document.identity
    policy = selectors.policy_for_identity(environment=environment, kind=kind, namespace=namespace, name=name)
    if draft is not None:
        draft = _lock(draft)
    else:
        draft = (
            Draft.objects.select_for_update()
            .filter(author=author, environment=environment, kind=kind, namespace=namespace, name=name)
            .first()
        )
    now = timezone.now()
    before = _snapshot(draft) if draft is not None else None
    if draft is None:
        draft = Draft(
            environment=environment,
            kind=kind,
            namespace=namespace,
            name=name,
            author=author,
            base_revision_id=policy.current_revision_id if policy is not None else None,
            created_at=now,
        )
    content = normalize_object(document.obj)
    findings = list(findings)
    draft.policy = policy
    draft.operation = (
        DraftOperation.UPDATE if policy is not None and policy.current_revision_id else DraftOperation.CREATE
    )
    draft.content = content
    draft.source_text = source.text
    draft.source_file, draft.source_line = source.file, source.line
    draft.content_hash = content_hash(content)
    if message is not None:
        draft.message = message
    draft.findings = _dicts(findings)
    draft.error_count = sum(1 for finding in findings if _is_error(finding))
    draft.warning_count = sum(1 for finding in findings if _level(finding) == Level.WARNING)
    draft.updated_at = now
    try:
        with transaction.atomic():
            draft.save()
    except IntegrityError as exc:  # another request created the same draft a moment ago
        raise ConflictError(
            f"your draft for {document.label} was saved by another request at the same time: try again"
        ) from exc
    audit_record(
        action=AuditAction.DRAFT_UPDATED if before is not None else AuditAction.DRAFT_CREATED,
        actor=author,
        obj=draft,
        environment=environment.name,
        before=before,
        after=_snapshot(draft),
    )
    return draft


def _lock(draft: Draft) -> Draft:
    locked = Draft.objects.select_for_update(of=("self",)).select_related("environment").filter(pk=draft.pk).first()
    if locked is None:
        raise ConflictError("the draft was discarded meanwhile")
    return locked


def _snapshot(draft: Draft) -> dict[str, Any]:
    """What the audit log records of a draft: its identity and a hash of its content."""
    return {
        "operation": draft.operation,
        "kind": draft.kind,
        "namespace": draft.namespace,
        "name": draft.name,
        "policy": draft.policy_id,
        "base_revision": draft.base_revision_id,
        "content_hash": draft.content_hash,
        "message": draft.message,
    }


def _identity_path(draft: Draft, document: ParsedDocument) -> str:
    if draft.kind != document.kind:
        return "kind"
    if draft.namespace != document.namespace:
        return "metadata.namespace"
    return "metadata.name"


def _not_author_message(environment: Environment, namespace: str) -> str:
    owner = (
        NamespaceOwnership.objects.filter(environment=environment, namespace=namespace).select_related("team").first()
    )
    who = f"team {owner.team.name}, which owns it" if owner else "its owning team (no team owns it yet)"
    return (
        f"you may not draft in namespace {namespace} of {environment.name}: only authors, approvers and admins "
        f"of {who} can"
    )


def _rejection_message(findings: list[Finding], what: str) -> str:
    first = findings[0]
    where = ":".join(str(part) for part in (first.file, first.line) if part not in ("", None))
    count = f"{len(findings)} problems" if len(findings) > 1 else "1 problem"
    return f"{what} ({count}); first: {where + ': ' if where else ''}{first.message}"


def _level(finding: Finding) -> str:
    return str(getattr(finding.level, "value", finding.level))


def _is_error(finding: Finding) -> bool:
    return _level(finding) == Level.ERROR


def _dicts(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [finding.as_dict() for finding in findings]


def _decoded(files: list[tuple[str, bytes]]) -> dict[str, str]:
    return {name: content.decode("utf-8", errors="replace").removeprefix("\ufeff") for name, content in files}


@dataclass(frozen=True)
class SourceText:
    """An object's text and where it stands in the uploaded file (`line` 0: written out anew)."""

    text: str
    file: str = ""
    line: int = 0


def _document_text(document: ParsedDocument, text: str, *, alone: bool, lines: list[str] | None = None) -> SourceText:
    """The object's own text, as written: the whole file when it is the file's only object,
    else its lines (separators trimmed); an item of a list, or an object given the default
    namespace, is written out as YAML."""
    if document.item is not None or document.namespace_defaulted:
        return SourceText(yaml.safe_dump(document.obj, sort_keys=False, allow_unicode=True), document.file)
    if alone:
        return SourceText(text, document.file, 1)
    if lines is None:  # split once per file by the caller, not once per object
        lines = text.splitlines(keepends=True)
    separators = ("---", "...")
    start = document.start_line - 1
    # Comments right above the object (after the previous separator) belong to it.
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    chunk = lines[start : max(document.end_line, document.start_line)]
    while chunk and (chunk[-1].strip() == "" or chunk[-1].startswith(separators)):
        chunk.pop()
    return SourceText("".join(chunk), document.file, start + 1)

"""Layer 4: a server-side apply with `dryRun=All` per object; the API server validates, stores nothing.

Only documents without errors in the earlier layers are sent. What the server answers becomes:
- 422 Invalid: one MG0901 error per cause, at the field's line;
- 409 from field managers (the live object's fields belong to another tool, e.g. kubectl): an MG0904
  warning, then the dry-run is repeated with `force=True`, as a rollout that takes ownership would
  apply it, so the server still validates the object;
- any other refusal (stale resourceVersion, missing namespace, 5xx): an MG0902 error with its message;
- unreachable or unauthorized: one MG0903 warning and no further requests.
"""

from __future__ import annotations

import re

from integrations.kubernetes import (
    ClusterConfig,
    Conflict,
    Invalid,
    KubernetesError,
    Unauthorized,
    Unreachable,
    apply_object,
)
from policies.cluster import cluster_config
from policies.models import Environment
from policies.validation.codes import finding
from policies.validation.findings import Finding
from policies.validation.parse import ParsedDocument

OWNERSHIP_REASON = "FieldManagerConflict"
_MANAGER = re.compile(r'conflict with "([^"]+)"')


class _NotPerformed(Exception):
    pass


def dry_run(environment: Environment, documents: list[ParsedDocument]) -> list[Finding]:
    cfg = cluster_config(environment)
    findings: list[Finding] = []
    for doc in documents:
        try:
            findings.extend(_dry_run_document(cfg, doc))
        except _NotPerformed as exc:
            findings.append(not_performed(str(exc)))
            break
    return findings


def not_performed(reason: str) -> Finding:
    message = (
        f"server dry-run not performed: {reason}; it runs again before rollout; check the environment's "
        "cluster connection and validate again"
    )
    return finding("MG0903", message)


def _apply(cfg: ClusterConfig, doc: ParsedDocument, *, force: bool) -> KubernetesError | None:
    try:
        apply_object(cfg, doc.obj, dry_run=True, force=force)
    except (Unreachable, Unauthorized) as exc:
        raise _NotPerformed(exc.message) from exc
    except KubernetesError as exc:
        return exc
    return None


def _dry_run_document(cfg: ClusterConfig, doc: ParsedDocument) -> list[Finding]:
    findings: list[Finding] = []
    error = _apply(cfg, doc, force=False)
    if isinstance(error, Conflict) and error.causes and all(c.reason == OWNERSHIP_REASON for c in error.causes):
        findings.append(_owned_elsewhere(doc, error))
        error = _apply(cfg, doc, force=True)
    if isinstance(error, Invalid) and error.causes:
        findings.extend(_invalid_field(doc, cause.field, cause.message) for cause in error.causes)
    elif error is not None:
        message = f"the API server refused the dry-run: {error.message}: correct the object, or retry if transient"
        findings.append(finding("MG0902", message, **doc.at()))
    return findings


def _field(raw: str) -> str:
    return raw.lstrip(".")


def _invalid_field(doc: ParsedDocument, raw_field: str, message: str) -> Finding:
    path = _field(raw_field)
    where = f"{path}: " if path else ""
    return finding("MG0901", f"the API server rejected {where}{message}; correct that field", **doc.at(path))


def _owned_elsewhere(doc: ParsedDocument, error: Conflict) -> Finding:
    managers = sorted({m for cause in error.causes for m in _MANAGER.findall(cause.message)}) or ["another manager"]
    fields = ", ".join(_field(cause.field) for cause in error.causes)
    message = (
        f"{fields} of the live object are managed by {', '.join(managers)}: a rollout takes them over, and "
        "that tool's next apply would take them back; stop managing the object with it"
    )
    return finding("MG0904", message, **doc.at(_field(error.causes[0].field)))

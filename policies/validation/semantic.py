"""Layer 3: cross-resource checks of the bundle's objects against the ValidationContext."""

from __future__ import annotations

from collections import defaultdict

from policies.validation.checks import REGISTRY, Check
from policies.validation.codes import finding
from policies.validation.context import ValidationContext
from policies.validation.findings import Finding
from policies.validation.parse import ParsedDocument


def checks_by_kind() -> dict[str, list[Check]]:
    index: dict[str, list[Check]] = defaultdict(list)
    for registered in REGISTRY:
        for kind in registered.kinds:
            index[kind].append(registered)
    return index


def check_semantics(context: ValidationContext, documents: list[ParsedDocument]) -> list[Finding]:
    """Runs every check registered for each document's kind; the bundle's objects only, not the environment's."""
    index = checks_by_kind()
    findings: list[Finding] = []
    for doc in documents:
        subject = context.get(*doc.identity)
        if subject is None or subject.document is not doc:
            continue
        for registered in index.get(doc.kind, []):
            if registered.needs_cluster and context.live is None:
                continue
            for hit in registered.function(subject, context):
                path, message = hit[0], hit[1]
                istio_code = hit[2] if len(hit) == 3 else None
                findings.append(finding(registered.code, message, istio_code=istio_code, **doc.at(path)))
    return findings

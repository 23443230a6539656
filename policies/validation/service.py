"""The validation engine's entry points: a bundle of files (or one text) in, a report of findings out.

Layers run in order: parse (and object identity), schema, cross-resource, and, when asked, the
server dry-run. Nothing raises on bad input or an unreachable cluster: every problem is a Finding.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from policies.models import Environment
from policies.validation.context import build_context
from policies.validation.dryrun import dry_run as server_dry_run
from policies.validation.dryrun import not_performed
from policies.validation.findings import Finding, Layer, Level, sort_findings
from policies.validation.parse import ParsedDocument, parse_bundle
from policies.validation.schema import check_schemas, environment_schemas
from policies.validation.semantic import check_semantics


@dataclass
class ValidationReport:
    documents: list[ParsedDocument]
    findings: list[Finding] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(item.level == Level.ERROR for item in self.findings)

    def for_document(self, doc: ParsedDocument) -> list[Finding]:
        """The findings of one document: found through an index by (file, document), built once."""
        return [item for item in self._by_document.get((doc.file, doc.index), []) if doc.covers(item)]

    @cached_property
    def _by_document(self) -> dict[tuple[str, int | None], list[Finding]]:
        index: dict[tuple[str, int | None], list[Finding]] = {}
        for item in self.findings:
            index.setdefault((item.file, item.document), []).append(item)
        return index

    def counts(self) -> dict[str, int]:
        return {level.value: sum(1 for item in self.findings if item.level == level) for level in Level}


def validate_bundle(
    *,
    environment: Environment,
    files: list[tuple[str, bytes]],
    dry_run: bool = False,
    exclude_policy_ids: Iterable[int] = (),
    default_namespace: str = "",
) -> ValidationReport:
    """Validate every object of `files` for `environment`.

    `exclude_policy_ids`: policies whose current revisions the bundle replaces, left out of the
    cross-resource context. `default_namespace`: for objects without metadata.namespace.
    """
    documents, findings = parse_bundle(files, default_namespace=default_namespace)
    checkable = [doc for doc in documents if doc.checkable]
    if checkable:
        findings.extend(
            _cluster_layers(environment, checkable, findings, dry_run=dry_run, exclude_policy_ids=exclude_policy_ids)
        )
    return ValidationReport(documents, sort_findings(findings, [name for name, _ in files]))


def _cluster_layers(
    environment: Environment,
    documents: list[ParsedDocument],
    parse_findings: list[Finding],
    *,
    dry_run: bool,
    exclude_policy_ids: Iterable[int],
) -> list[Finding]:
    """Schema, cross-resource and (optionally) dry-run findings; once the cluster proved unreachable,
    the later layers do not try it again (each try may wait for the full timeout)."""
    schema = check_schemas(documents, schemas=environment_schemas(environment), environment_name=environment.name)
    reachable = not schema.cluster_unreachable
    context, findings = build_context(
        environment, documents, exclude_policy_ids=exclude_policy_ids, read_cluster=reachable
    )
    findings = [*schema.findings, *findings, *_without_repeats(check_semantics(context, documents), schema.findings)]
    if dry_run and not reachable:
        findings.append(not_performed("the cluster could not be reached"))
    elif dry_run:
        findings.extend(server_dry_run(environment, _without_errors(documents, [*parse_findings, *findings])))
    return findings


def validate_text(
    *,
    environment: Environment,
    text: str,
    filename: str = "",
    dry_run: bool = False,
    default_namespace: str = "",
) -> ValidationReport:
    return validate_bundle(
        environment=environment,
        files=[(filename, text.encode("utf-8", errors="surrogatepass"))],
        dry_run=dry_run,
        default_namespace=default_namespace,
    )


def _without_repeats(semantic: list[Finding], schema: list[Finding]) -> list[Finding]:
    """Drops a cross-resource finding about a field the schema already found wrong."""
    wrong = {(item.file, item.document, item.path) for item in schema if item.level == Level.ERROR}
    return [item for item in semantic if (item.file, item.document, item.path) not in wrong]


def _without_errors(documents: list[ParsedDocument], findings: list[Finding]) -> list[ParsedDocument]:
    failed = [item for item in findings if item.level == Level.ERROR and item.layer != Layer.DRYRUN]
    return [doc for doc in documents if not any(doc.covers(item) for item in failed)]

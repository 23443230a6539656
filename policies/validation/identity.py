"""What each object is: apiVersion/kind among the supported ones, a valid name and namespace, no twin.

Runs at the end of the parse layer. A document whose kind, name or namespace is unusable is marked
`checkable = False`: later layers skip it, so an unsupported kind gets one clear finding and no other.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING

from integrations.kubernetes import kind_info
from policies.choices import PolicyKind
from policies.validation.codes import finding
from policies.validation.findings import Finding

if TYPE_CHECKING:
    from policies.validation.parse import ParsedDocument

# Which versions a kind is served in is the cluster's CRD's to say (versions[]); the schema layer
# checks it (MG0207). Here only the form of a Kubernetes version.
API_VERSION_NAME = re.compile(r"^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$")
SUPPORTED_KINDS: tuple[str, ...] = tuple(PolicyKind.values)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LENGTH = 253
MAX_NAMESPACE_LENGTH = 63


def check_identities(documents: list[ParsedDocument], *, default_namespace: str = "") -> list[Finding]:
    findings: list[Finding] = []
    first: dict[tuple[str, str, str], ParsedDocument] = {}
    for doc in documents:
        findings.extend(check_identity(doc, default_namespace=default_namespace))
        if not doc.checkable:
            continue
        earlier = first.setdefault(doc.identity, doc)
        if earlier is not doc:
            doc.checkable = False
            findings.append(_duplicate(doc, earlier))
    return findings


def check_identity(doc: ParsedDocument, *, default_namespace: str = "") -> list[Finding]:
    problems = _type_of(doc)
    if problems:
        doc.checkable = False
        return problems
    metadata = doc.obj.get("metadata")
    if not isinstance(metadata, dict):
        doc.checkable = False
        message = "metadata is missing or not a mapping: add `metadata:` with `name:` and `namespace:`"
        return [finding("MG0104", message, **doc.at("metadata"))]
    return [*_api_version(doc), *_name(doc, metadata), *_namespace(doc, metadata, default_namespace)]


def _type_of(doc: ParsedDocument) -> list[Finding]:
    api_version, kind = doc.obj.get("apiVersion"), doc.obj.get("kind")
    missing = [
        name for name, value in (("apiVersion", api_version), ("kind", kind)) if not isinstance(value, str) or not value
    ]
    if missing:
        fields = " and ".join(missing)
        message = (
            f"{fields} missing or not a string: every object needs them, "
            "e.g. `apiVersion: networking.istio.io/v1` and `kind: VirtualService`"
        )
        return [finding("MG0101", message, **doc.at(missing[0]))]
    if kind not in SUPPORTED_KINDS:
        return [finding("MG0102", _unsupported_message(str(kind)), **doc.at("kind"))]
    return []


def _unsupported_message(kind: str) -> str:
    lowered = {name.lower(): name for name in SUPPORTED_KINDS}
    guess = lowered.get(kind.lower()) or next(iter(difflib.get_close_matches(kind, SUPPORTED_KINDS, n=1)), None)
    if guess:
        return f"unsupported kind {kind}: did you mean {guess}?"
    return (
        f"unsupported kind {kind}: Meshgate manages {', '.join(SUPPORTED_KINDS)}; "
        "remove it from the bundle and manage it outside Meshgate"
    )


def _api_version(doc: ParsedDocument) -> list[Finding]:
    api_version: str = doc.obj["apiVersion"]
    info = kind_info(doc.kind)
    group, _, version = api_version.rpartition("/")
    if group != info.group:
        message = f"apiVersion {api_version} does not match kind {doc.kind}: use {info.api_version}"
        return [finding("MG0103", message, **doc.at("apiVersion"))]
    if not API_VERSION_NAME.match(version):
        message = f"{version!r} is not a Kubernetes API version (v1, v1beta1, v1alpha3, ...): use {info.api_version}"
        return [finding("MG0103", message, **doc.at("apiVersion"))]
    return []


def _name(doc: ParsedDocument, metadata: dict) -> list[Finding]:
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        doc.checkable = False
        message = "metadata.name is missing: give the object a name (lower-case letters, digits, '-' and '.')"
        return [finding("MG0104", message, **doc.at("metadata.name"))]
    if len(name) > MAX_NAME_LENGTH or not DNS1123_SUBDOMAIN.match(name):
        message = (
            f"metadata.name {name!r} is not a valid name: use at most {MAX_NAME_LENGTH} lower-case "
            "letters, digits, '-' and '.', starting and ending with a letter or digit"
        )
        return [finding("MG0104", message, **doc.at("metadata.name"))]
    return []


def _namespace(doc: ParsedDocument, metadata: dict, default_namespace: str) -> list[Finding]:
    namespace = metadata.get("namespace")
    if namespace is None and default_namespace:
        metadata["namespace"] = namespace = default_namespace
        doc.namespace_defaulted = True
    if not isinstance(namespace, str) or not namespace:
        doc.checkable = False
        message = "metadata.namespace is missing: set the namespace the object belongs to"
        return [finding("MG0105", message, **doc.at("metadata.namespace"))]
    if len(namespace) > MAX_NAMESPACE_LENGTH or not DNS1123_LABEL.match(namespace):
        message = (
            f"metadata.namespace {namespace!r} is not a valid namespace: use at most {MAX_NAMESPACE_LENGTH} "
            "lower-case letters, digits and '-', starting and ending with a letter or digit"
        )
        return [finding("MG0105", message, **doc.at("metadata.namespace"))]
    return []


def _duplicate(doc: ParsedDocument, earlier: ParsedDocument) -> Finding:
    where = f"{earlier.file + ' ' if earlier.file else ''}line {earlier.start_line}"
    message = f"{doc.label} is already defined in this bundle ({where}): remove one of them or give it another name"
    return finding("MG0106", message, **doc.at("metadata.name"))

"""ServiceEntry: resolution modes that cannot work with the hosts and endpoints given."""
from __future__ import annotations

from collections.abc import Iterator

from policies.choices import PolicyKind
from policies.validation.checks.base import Hit, check, items, strings, text
from policies.validation.context import MeshObject, ValidationContext, match_labels

SE = PolicyKind.SERVICE_ENTRY
DNS_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN"})


@check("MG0701", SE)
def static_has_endpoints(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    if (text(obj.spec.get("resolution")) == "STATIC" and not items(obj.spec.get("endpoints"))
            and not match_labels(obj, "workloadSelector")):
        yield ("spec.resolution", "resolution STATIC needs endpoints (or a workloadSelector) to send traffic to: add "
                                  "endpoints, or use resolution DNS")


@check("MG0702", SE)
def dns_hosts_not_wildcard(obj: MeshObject, ctx: ValidationContext) -> Iterator[Hit]:
    resolution = text(obj.spec.get("resolution"))
    if resolution not in DNS_RESOLUTIONS or items(obj.spec.get("endpoints")):
        return
    for path, host in strings(obj.spec, "hosts", "spec"):
        if "*" in host:
            yield path, (f"host {host!r} is a wildcard, which resolution {resolution} cannot look up: use resolution "
                         "NONE, or list concrete hosts")

"""Explaining a host that resolves to nothing: what Istio made of it and what the author probably meant."""
from __future__ import annotations

import difflib

from policies.validation.context import DOMAIN_SUFFIX, ValidationContext, fqdn

SVC_SUFFIX = f".{DOMAIN_SUFFIX}"  # ".svc.cluster.local"


def unknown_host_message(host: str, namespace: str, ctx: ValidationContext, *, what: str) -> str:
    """Why `host`, written in an object of `namespace`, is neither a Service nor a ServiceEntry host."""
    resolved = fqdn(host, namespace)
    if "." not in host:
        return (f"{what} {host!r} is neither a Service in namespace {namespace} ({resolved}) nor a ServiceEntry "
                f"host{_suggest(host, namespace, ctx)}: correct it, or write "
                f"<name>.<namespace>{SVC_SUFFIX} for a Service in another namespace")
    if resolved.endswith(SVC_SUFFIX):
        name, _, service_namespace = resolved.removesuffix(SVC_SUFFIX).partition(".")
        if not ctx.namespace_exists(service_namespace):
            return f"{what} {host!r} names namespace {service_namespace!r}, which does not exist: correct it"
        return (f"{what} {host!r}: there is no Service {name} in namespace {service_namespace}"
                f"{_suggest(name, service_namespace, ctx)}: correct the host or deploy the Service first")
    name, _, rest = host.partition(".")
    if rest and "." not in rest and fqdn(name, rest) in ctx.services:
        return (f"{what} {host!r} is taken as a fully qualified name, which Istio does not expand: "
                f"write {fqdn(name, rest)}")
    return (f"{what} {host!r} is outside the cluster and no ServiceEntry declares it: add a ServiceEntry "
            f"with this host, or correct it")


def _suggest(name: str, namespace: str, ctx: ValidationContext) -> str:
    names = [service.name for service in ctx.services_in(namespace)]
    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

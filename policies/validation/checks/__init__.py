"""Cross-resource checks, one small function per finding code (see `base.check`)."""

from policies.validation.checks import (
    destinationrule,
    extensions,
    gateway,
    gateway_api,
    security,
    serviceentry,
    sidecar,
    virtualservice,
    workloads,
)
from policies.validation.checks.base import REGISTRY, Check

__all__ = [
    "REGISTRY",
    "Check",
    "destinationrule",
    "extensions",
    "gateway",
    "gateway_api",
    "security",
    "serviceentry",
    "sidecar",
    "virtualservice",
    "workloads",
]

"""Cross-resource checks, one small function per finding code (see `base.check`)."""
from policies.validation.checks import destinationrule, gateway, security, serviceentry, sidecar, virtualservice
from policies.validation.checks.base import REGISTRY, Check

__all__ = ["REGISTRY", "Check", "destinationrule", "gateway", "security", "serviceentry", "sidecar", "virtualservice"]

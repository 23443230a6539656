"""Seeds a row for each built-in guardrail (the defaults of `policies.guardrails.builtin`, written out
here so that this migration does not change when the code does). Existing rows are left alone."""

from typing import Any

from django.db import migrations

BUILTINS = [
    {
        "builtin_key": "no-allow-all-authz",
        "name": "No allow-all AuthorizationPolicy",
        "description": "An ALLOW AuthorizationPolicy must not contain a rule that matches every request "
        "(rules: [{}]). An ALLOW policy without rules denies everything and passes.",
        "enforcement": "hard_mandatory",
        "message": "{object} allows all traffic: {details}",
        "kinds": ["AuthorizationPolicy"],
        "production_only": False,
        "parameters": {},
    },
    {
        "builtin_key": "mtls-strict-production",
        "name": "mTLS STRICT in production",
        "description": "PeerAuthentication in production environments sets mode STRICT, also per port.",
        "enforcement": "soft_mandatory",
        "message": "{object} must enforce mutual TLS in {environment}: {details}",
        "kinds": ["PeerAuthentication"],
        "production_only": True,
        "parameters": {},
    },
    {
        "builtin_key": "timeouts-within-bounds",
        "name": "Timeouts and retries within bounds",
        "description": "HTTP route timeouts at most max_timeout_seconds, retry attempts at most max_retries, "
        "and attempts × perTryTimeout within the route timeout.",
        "enforcement": "soft_mandatory",
        "message": "{object}: {details}",
        "kinds": ["VirtualService"],
        "production_only": False,
        "parameters": {"max_timeout_seconds": 60, "max_retries": 5},
    },
    {
        "builtin_key": "no-wildcard-hosts",
        "name": "No wildcard hosts in the mesh",
        "description": "Hosts '*' or '*.domain' only on Gateways and on VirtualServices bound to gateways only.",
        "enforcement": "soft_mandatory",
        "message": "{object} uses a wildcard host: {details}",
        "kinds": ["VirtualService", "DestinationRule", "ServiceEntry"],
        "production_only": False,
        "parameters": {},
    },
    {
        "builtin_key": "weights-sum-100",
        "name": "Route weights add up to 100",
        "description": "Every http, tcp and tls route with more than one destination splits exactly 100 %.",
        "enforcement": "hard_mandatory",
        "message": "{object}: {details}",
        "kinds": ["VirtualService"],
        "production_only": False,
        "parameters": {},
    },
]


def seed(apps: Any, schema_editor: Any) -> None:
    Guardrail = apps.get_model("policies", "Guardrail")
    for row in BUILTINS:
        if not Guardrail.objects.filter(builtin_key=row["builtin_key"]).exists():
            Guardrail.objects.create(**row)


def unseed(apps: Any, schema_editor: Any) -> None:
    Guardrail = apps.get_model("policies", "Guardrail")
    Guardrail.objects.filter(builtin_key__in=[row["builtin_key"] for row in BUILTINS], overrides__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("policies", "0004_governance")]
    operations = [migrations.RunPython(seed, unseed)]

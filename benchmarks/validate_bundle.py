"""Times `validate_bundle` on a 1,000-object bundle against a simulated cluster.

    .venv/bin/python benchmarks/validate_bundle.py [--objects 1000] [--runs 5] [--profile]

Starts meshsim with the staging demo mesh, creates a throwaway environment in a temporary SQLite
database (whatever DATABASE_URL says), imports the mesh's Istio objects as policies, generates a
bundle mixing all 8 kinds that references the demo mesh's services, subsets and gateways, warms the
schema cache once, then prints the median of `--runs` validations over every layer but the dry-run
(the CRDs' CEL validation rules included) and the time per object.
`--profile` also prints a pyinstrument profile of one run (pyinstrument is a dev tool, not a dependency).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0
TARGET_MS_PER_OBJECT = 20.0
DOCUMENTS_PER_FILE = 50
KIND_SHARES = {  # out of 20
    "VirtualService": 5,
    "DestinationRule": 4,
    "AuthorizationPolicy": 4,
    "ServiceEntry": 2,
    "Gateway": 1,
    "Sidecar": 1,
    "PeerAuthentication": 1.5,
    "RequestAuthentication": 1.5,
}
SERVICES = {
    "bookinfo": ("productpage", "details", "reviews", "ratings"),
    "shop": ("frontend", "catalog", "cart", "checkout", "payments"),
}
PORTS = {"bookinfo": 9080, "shop": 8080}


def _setup_django(workdir: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'benchmark.sqlite3'}"
    os.environ["MESHGATE_VAR_DIR"] = str(workdir)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _meta(kind: str, name: str, namespace: str) -> dict[str, Any]:
    group = "security" if kind.endswith("Authentication") or kind == "AuthorizationPolicy" else "networking"
    return {
        "apiVersion": f"{group}.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name, "team": namespace}},
    }


def virtual_service(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("VirtualService", f"{service}-vs-{i}", namespace),
        "spec": {
            "hosts": [f"{service}-{i}.{namespace}.example.com"],
            "gateways": [f"{namespace}-gateway" if namespace == "shop" else "bookinfo-gateway"],
            "http": [
                {
                    "name": "canary",
                    "match": [{"headers": {"x-canary": {"exact": "true"}}, "uri": {"prefix": f"/api/v{i % 3}"}}],
                    "route": [{"destination": {"host": service, "subset": "v1", "port": {"number": PORTS[namespace]}}}],
                    "timeout": "5s",
                    "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx,reset"},
                },
                {
                    "match": [{"uri": {"regex": "^/static/[a-z0-9]+\\.(css|js)$"}}],
                    "route": [{"destination": {"host": service, "port": {"number": PORTS[namespace]}}}],
                },
                {
                    "route": [
                        {
                            "destination": {"host": service, "subset": "v1", "port": {"number": PORTS[namespace]}},
                            "weight": 90,
                        },
                        {
                            "destination": {"host": service, "subset": "v2", "port": {"number": PORTS[namespace]}},
                            "weight": 10,
                        },
                    ],
                    "fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "1s"}},
                    "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "allowMethods": ["GET", "POST"]},
                },
            ],
        },
    }


def destination_rule(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("DestinationRule", f"{service}-dr-{i}", namespace),
        "spec": {
            "host": f"{service}.{namespace}.svc.cluster.local",
            "workloadSelector": {"matchLabels": {"app": service}},
            "trafficPolicy": {
                "connectionPool": {"tcp": {"maxConnections": 100}, "http": {"http1MaxPendingRequests": 50}},
                "outlierDetection": {"consecutive5xxErrors": 5, "interval": "30s", "baseEjectionTime": "60s"},
                "tls": {"mode": "ISTIO_MUTUAL"},
            },
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {
                    "name": "v2",
                    "labels": {"version": "v2"},
                    "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}},
                },
            ],
        },
    }


def authorization_policy(i: int, namespace: str, service: str) -> dict[str, Any]:
    other = "shop" if namespace == "bookinfo" else "bookinfo"
    return {
        **_meta("AuthorizationPolicy", f"{service}-authz-{i}", namespace),
        "spec": {
            "selector": {"matchLabels": {"app": service}},
            "action": "ALLOW",
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "principals": [f"cluster.local/ns/{namespace}/sa/{service}-caller"],
                                "namespaces": [namespace, other],
                            }
                        }
                    ],
                    "to": [{"operation": {"methods": ["GET", "POST"], "paths": [f"/api/v1/{service}/*"]}}],
                    "when": [{"key": "request.headers[x-tenant]", "values": [f"tenant-{i}"]}],
                },
            ],
        },
    }


def service_entry(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("ServiceEntry", f"external-{i}", namespace),
        "spec": {
            "hosts": [f"api-{i}.partner.example.com"],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
        },
    }


def gateway(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("Gateway", f"edge-{i}", namespace),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": [f"edge-{i}.example.com"],
                    "tls": {"mode": "SIMPLE", "credentialName": f"edge-{i}-tls"},
                }
            ],
        },
    }


def sidecar(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("Sidecar", f"{service}-sidecar-{i}", namespace),
        "spec": {
            "workloadSelector": {"labels": {"app": service}},
            "egress": [{"hosts": ["./*", "istio-system/*", f"*/api-{i}.partner.example.com"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def peer_authentication(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("PeerAuthentication", f"{service}-mtls-{i}", namespace),
        "spec": {
            "selector": {"matchLabels": {"app": service}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {str(PORTS[namespace]): {"mode": "STRICT"}},
        },
    }


def request_authentication(i: int, namespace: str, service: str) -> dict[str, Any]:
    return {
        **_meta("RequestAuthentication", f"{service}-jwt-{i}", namespace),
        "spec": {
            "selector": {"matchLabels": {"app": service}},
            "jwtRules": [
                {
                    "issuer": f"https://issuer-{i}.example.com",
                    "jwksUri": f"https://issuer-{i}.example.com/jwks",
                    "audiences": [service],
                    "forwardOriginalToken": True,
                }
            ],
        },
    }


BUILDERS = {
    "VirtualService": virtual_service,
    "DestinationRule": destination_rule,
    "AuthorizationPolicy": authorization_policy,
    "ServiceEntry": service_entry,
    "Gateway": gateway,
    "Sidecar": sidecar,
    "PeerAuthentication": peer_authentication,
    "RequestAuthentication": request_authentication,
}


def generate_bundle(count: int) -> list[tuple[str, bytes]]:
    """`count` objects of all 8 kinds in files of DOCUMENTS_PER_FILE documents."""
    total = sum(KIND_SHARES.values())
    plan = [kind for kind, share in KIND_SHARES.items() for _ in range(round(count * share / total))]
    plan = (plan + list(KIND_SHARES))[:count]
    placements = itertools.cycle([(ns, svc) for ns, services in SERVICES.items() for svc in services])
    objects = [BUILDERS[kind](i, *next(placements)) for i, kind in enumerate(plan)]
    return [
        (
            f"bundle-{n:03}.yaml",
            yaml.safe_dump_all(objects[start : start + DOCUMENTS_PER_FILE], sort_keys=False).encode(),
        )
        for n, start in enumerate(range(0, len(objects), DOCUMENTS_PER_FILE))
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp:
        workdir = Path(tmp)
        _setup_django(workdir)
        from policies.services.imports import environment_import
        from policies.validation import validate_bundle
        from tests.factories import EnvironmentFactory
        from tests.fixtures.meshsim import start_meshsim

        server = start_meshsim(workdir, name="staging")
        try:
            environment = EnvironmentFactory(name="staging", api_url=server.url)
            imported = environment_import(environment=environment)
            files = generate_bundle(args.objects)
            size = sum(len(content) for _, content in files)

            def run():
                return validate_bundle(environment=environment, files=files)

            warm = run()  # fills the schema cache
            timings = []
            for _ in range(args.runs):
                started = time.perf_counter()
                report = run()
                timings.append(time.perf_counter() - started)
            if args.profile:
                from pyinstrument import Profiler

                with Profiler(interval=0.0005) as profiler:
                    run()
                profiler.print(show_all=False)
        finally:
            server.stop()
    median = statistics.median(timings)
    print(
        f"bundle: {len(warm.documents)} objects in {len(files)} files, {size / 1024:.0f} KiB; "
        f"environment: {imported.seen} live policies"
    )
    print(f"findings: {report.counts()}")
    print(f"runs: {', '.join(f'{t:.3f}' for t in timings)} s")
    print(
        f"median validate_bundle (parse + schema + cross-resource, no dry-run): {median:.3f} s "
        f"(target < {TARGET_SECONDS:.0f} s: {'met' if median < TARGET_SECONDS else 'NOT met'})"
    )
    per_object = median / max(len(warm.documents), 1) * 1000
    print(f"per object: {per_object:.2f} ms (target <= {TARGET_MS_PER_OBJECT:.0f} ms)")
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())

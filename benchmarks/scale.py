"""Meshgate at N live objects: the reads that must stay flat, against their targets, with query counts.

    .venv/bin/python benchmarks/scale.py --objects 10000 --database-url postgres://postgres@127.0.0.1:5432/wt13

Generates a meshsim seed of N objects in N/20 namespaces (per namespace: the Namespace, 3 Services,
6 Pods, 3 VirtualServices, 3 DestinationRules, 2 AuthorizationPolicies, a PeerAuthentication and a
Sidecar), starts meshsim with it, and on a throwaway database (the URL's database is DROPPED and
re-created; without a URL: SQLite in a temporary folder) measures, through the shipped code paths:
the watcher's first list into the live inventory; the first import and a re-import; validating one
object and a 1,000-object bundle (parse, schema, cross-resource checks; the inventory is fresh);
the catalog's last page and the policy API's last page (as a security-team member, who sees all);
the change page and the plan of a 500-item change. Medians of --runs runs (after one warm-up), wall
and CPU time of this process (PostgreSQL and meshsim are other processes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import setup_django

TARGETS = {  # seconds
    "first import": 30.0,
    "validate one object": 0.1,
    "validate a 1,000-object bundle": 2.0,
    "catalog last page": 0.15,
    "policy API last page": 0.15,
    "change page (500 items)": 1.0,
}
PAGE_BYTES_TARGET = 1_000_000


def seed_documents(objects: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for n in range(max(objects // 20, 1)):
        ns = f"ns-{n:04d}"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}},
            }
        )
        for s in range(3):
            app = f"app{s}"
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": app, "namespace": ns},
                    "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 8080}]},
                }
            )
            for version in ("v1", "v2"):
                docs.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": f"{app}-{version}-0",
                            "namespace": ns,
                            "labels": {"app": app, "version": version},
                        },
                        "spec": {"containers": [{"name": app, "image": f"example/{app}:{version}"}]},
                    }
                )
            docs.append(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": {"name": app, "namespace": ns},
                    "spec": {"host": app, "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]},
                }
            )
            docs.append(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "VirtualService",
                    "metadata": {"name": app, "namespace": ns},
                    "spec": {
                        "hosts": [app],
                        "http": [
                            {
                                "route": [
                                    {
                                        "destination": {"host": app, "subset": "v1", "port": {"number": 8080}},
                                        "weight": 90,
                                    },
                                    {
                                        "destination": {"host": app, "subset": "v2", "port": {"number": 8080}},
                                        "weight": 10,
                                    },
                                ]
                            }
                        ],
                    },
                }
            )
        for s in range(2):
            docs.append(
                {
                    "apiVersion": "security.istio.io/v1",
                    "kind": "AuthorizationPolicy",
                    "metadata": {"name": f"allow-app{s}", "namespace": ns},
                    "spec": {
                        "selector": {"matchLabels": {"app": f"app{s}"}},
                        "action": "ALLOW",
                        "rules": [{"from": [{"source": {"namespaces": [ns]}}]}],
                    },
                }
            )
        docs.append(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": ns},
                "spec": {"mtls": {"mode": "STRICT"}},
            }
        )
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Sidecar",
                "metadata": {"name": "default", "namespace": ns},
                "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]},
            }
        )
    return docs


def bundle(count: int, namespaces: int) -> str:
    docs = []
    for i in range(count):
        ns, app = f"ns-{i % namespaces:04d}", f"app{i % 3}"
        docs.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": f"bench-{i:04d}", "namespace": ns},
                "spec": {
                    "hosts": [f"bench-{i}.{ns}.example.com"],
                    "http": [{"route": [{"destination": {"host": app, "subset": "v2", "port": {"number": 8080}}}]}],
                },
            }
        )
    return yaml.safe_dump_all(docs, sort_keys=False)


def measure(
    name: str,
    fn: Callable[[], Any],
    runs: int,
    results: list[tuple[str, float, float, int, str]],
    note: Callable[[Any], str] = lambda _: "",
) -> Any:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    value = fn()  # warm-up
    timings, cpu = [], []
    for _ in range(runs):
        reset_queries()  # the query log keeps 9,000: counts are exact only below that
        with CaptureQueriesContext(connection) as queries:
            started, cpu_started = time.perf_counter(), time.process_time()
            value = fn()
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    median = statistics.median(timings)
    results.append((name, median, statistics.median(cpu), len(queries.captured_queries), note(value)))
    target = TARGETS.get(name)
    verdict = "" if target is None else (f" (target < {target:g} s: {'ok' if median < target else 'MISSED'})")
    print(
        f"{name}: {median:.3f} s (CPU {statistics.median(cpu):.3f} s), {len(queries.captured_queries)} queries"
        f"{verdict} {note(value)}",
        flush=True,
    )
    return value


def once(name: str, fn: Callable[[], Any], results: list[tuple[str, float, float, int, str]]) -> Any:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    reset_queries()
    with CaptureQueriesContext(connection) as queries:
        started, cpu_started = time.perf_counter(), time.process_time()
        value = fn()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    results.append((name, elapsed, cpu, len(queries.captured_queries), ""))
    target = TARGETS.get(name)
    verdict = "" if target is None else (f" (target < {target:g} s: {'ok' if elapsed < target else 'MISSED'})")
    print(f"{name}: {elapsed:.3f} s (CPU {cpu:.3f} s), {len(queries.captured_queries)} queries{verdict}", flush=True)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="meshgate-scale-") as tmp:
        workdir = Path(tmp)
        setup_django(workdir, args.database_url, "", {"MESHGATE_INVENTORY_MAX_AGE_SECONDS": "3600"})
        from django.test import Client
        from django.test.utils import setup_test_environment

        from integrations.kubernetes.watch import WATCHED_KINDS, list_raw
        from policies.cluster import cluster_config
        from policies.models import ChangeRequest, Policy
        from policies.services.imports import environment_import
        from policies.services.inventory import inventory_replace
        from policies.services.plans import plan_compute
        from policies.validation import validate_text
        from tests.factories import EnvironmentFactory, MembershipFactory, TeamFactory, UserFactory
        from tests.fixtures.meshsim import start_meshsim
        from tests.policies.changes.helpers import build_large_change

        setup_test_environment()
        docs = seed_documents(args.objects)
        namespaces = max(args.objects // 20, 1)
        seed = workdir / "seed.yaml"
        seed.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        started = time.perf_counter()
        meshsim = start_meshsim(workdir, name="scale", seeds=[seed], timeout=600)
        print(
            f"meshsim with {len(docs)} objects in {namespaces} namespaces up in {time.perf_counter() - started:.1f} s"
        )
        results: list[tuple[str, float, float, int, str]] = []
        try:
            env = EnvironmentFactory(name="staging", order=10, api_url=meshsim.url)
            security = TeamFactory(slug="security", name="Security", is_security=True)
            reader = UserFactory(username="sam")
            MembershipFactory(team=security, user=reader)
            author = UserFactory(username="alice")
            cfg = cluster_config(env)

            def sync_inventory() -> int:
                total = 0
                for kind in WATCHED_KINDS:
                    items, version = list_raw(cfg, kind)
                    inventory_replace(env.pk, kind, items, version)
                    total += len(items)
                return total

            count = once("inventory: the watcher's first list of every kind", sync_inventory, results)
            print(f"  ({count} objects in the inventory)")
            once("first import", lambda: environment_import(environment=env), results)
            once("re-import (nothing changed)", lambda: environment_import(environment=env), results)
            one = bundle(1, namespaces)
            measure(
                "validate one object",
                lambda: validate_text(environment=env, text=one),
                max(args.runs, 5),
                results,
                note=lambda r: f"[{len(r.findings)} findings]",
            )
            many = bundle(1000, namespaces)
            measure(
                "validate a 1,000-object bundle",
                lambda: validate_text(environment=env, text=many),
                args.runs,
                results,
                note=lambda r: f"[{len(r.findings)} findings]",
            )

            client = Client()
            client.force_login(reader)
            policies = Policy.objects.filter(environment=env).count()
            last = (policies + 49) // 50

            def page(url: str) -> Any:
                response = client.get(url)
                assert response.status_code == 200, (url, response.status_code)
                return response

            measure(
                "catalog last page",
                lambda: page(f"/policies/?page={last}"),
                args.runs,
                results,
                note=lambda r: f"[{policies} policies, page {last}]",
            )
            measure(
                "policy API last page",
                lambda: page(f"/api/v1/policies/?limit=50&offset={max(policies - 50, 0)}"),
                args.runs,
                results,
            )

            change = build_large_change(environment=env, author=author, count=500, namespace="ns-0000", prefix="big")
            client.force_login(author)
            response = measure(
                "change page (500 items)",
                lambda: page(f"/changes/{change.pk}/"),
                args.runs,
                results,
                note=lambda r: f"[{len(r.content) / 1024:.0f} KiB]",
            )
            size = len(response.content)
            print(
                f"  change page size {size / 1024:.0f} KiB (target < {PAGE_BYTES_TARGET / 1e6:.0f} MB: "
                f"{'ok' if size < PAGE_BYTES_TARGET else 'MISSED'})"
            )
            once(
                "plan of the 500-item change (live from the inventory, 500 server dry-runs)",
                lambda: plan_compute(change=ChangeRequest.objects.get(pk=change.pk)),
                results,
            )
        finally:
            meshsim.stop()
    print()
    print(f"| N = {args.objects} | median s | CPU s (this process) | queries |")
    for name, seconds, cpu, queries, note in results:
        print(f"| {name} {note} | {seconds:.3f} | {cpu:.3f} | {queries} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

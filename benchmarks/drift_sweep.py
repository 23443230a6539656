"""Times the drift sweep (`policies.services.drift.drift_detect`) at N objects Meshgate rolled out.

    .venv/bin/python benchmarks/drift_sweep.py [--objects 1000,10000] [--drifted 1] [--database-url URL]
        [--stale-inventory]

For each N: a meshsim cluster seeded with N VirtualServices and DestinationRules (half each) over
N/20 namespaces, a throwaway SQLite database (DATABASE_URL replaced; a postgres URL given with
`--database-url` is dropped and re-created) holding a Policy per object whose last revision came from
a rollout (content hash of the live object), and `--drifted` percent of the objects then edited on
the cluster by another writer. The live inventory then holds what the watcher (`manage.py
watch_inventory`, shipped beside the workers) lists, so the sweep reads it as it does in a
deployment; with `--stale-inventory` the inventory is older than its bound and the sweep lists the
cluster instead. Prints per N: the sweep's wall and CPU time, the number of cluster requests and
database queries, and its counts; then a second sweep (nothing new: it only compares hashes).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def seed_documents(n: int) -> list[dict]:
    namespaces = max(1, n // 20)
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i}"}} for i in range(namespaces)
    ]
    for i in range(n):
        ns, name = f"ns-{i % namespaces}", f"svc-{i}"
        if i % 2 == 0:
            docs.append(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "VirtualService",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "hosts": [name],
                        "http": [
                            {
                                "route": [
                                    {"destination": {"host": name, "subset": "v1"}, "weight": 90},
                                    {"destination": {"host": name, "subset": "v2"}, "weight": 10},
                                ]
                            }
                        ],
                    },
                }
            )
        else:
            docs.append(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {
                        "host": name,
                        "subsets": [
                            {"name": "v1", "labels": {"version": "v1"}},
                            {"name": "v2", "labels": {"version": "v2"}},
                        ],
                    },
                }
            )
    return docs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", default="1000,10000")
    parser.add_argument("--drifted", type=float, default=1.0, help="percent of objects edited out of band")
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--stale-inventory", action="store_true", help="the inventory is stale: the sweep lists the cluster"
    )
    parser.add_argument("--row-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(x) for x in args.objects.split(",")]
    if args.row_only:
        with tempfile.TemporaryDirectory() as tmp:
            print(run(Path(tmp), sizes[0], args.drifted, args.database_url, args.stale_inventory), flush=True)
        return 0
    print(
        "| objects | namespaces | live state read from | sweep wall (s) | sweep CPU (s) | cluster requests | "
        "DB queries | checked | drifted (new) | second sweep (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:  # each size in a fresh process (Django is set up once per process)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--objects",
                str(n),
                "--drifted",
                str(args.drifted),
                "--database-url",
                args.database_url,
                "--row-only",
                *(["--stale-inventory"] if args.stale_inventory else []),
            ],
            check=True,
        )
    return 0


def run(workdir: Path, n: int, drifted_percent: float, database_url: str, stale_inventory: bool) -> str:
    from benchmarks._common import setup_django
    from tests.fixtures.meshsim import start_meshsim

    setup_django(workdir, database_url, "", {"MESHGATE_INVENTORY_MAX_AGE_SECONDS": "0" if stale_inventory else "3600"})
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from integrations import kubernetes as kube
    from integrations.kubernetes.watch import WATCHED_KINDS, list_raw
    from policies.choices import RevisionSource
    from policies.cluster import cluster_config
    from policies.models import Environment, Policy, PolicyRevision
    from policies.normalize import content_hash, normalize_object
    from policies.services.drift import drift_detect
    from policies.services.inventory import inventory_replace

    docs = seed_documents(n)
    seed = workdir / "seed.yaml"
    seed.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    meshsim = start_meshsim(workdir, name="drift", seeds=[seed], timeout=300)
    try:
        env = Environment.objects.create(name="staging", order=10, api_url=meshsim.url)
        cfg = cluster_config(env)
        objects = [d for d in docs if d["kind"] != "Namespace"]
        policies = Policy.objects.bulk_create(
            [
                Policy(
                    environment=env, kind=d["kind"], namespace=d["metadata"]["namespace"], name=d["metadata"]["name"]
                )
                for d in objects
            ]
        )
        revisions = []
        for policy, doc in zip(policies, objects, strict=True):
            content = normalize_object(doc)
            revisions.append(
                PolicyRevision(
                    policy=policy,
                    number=1,
                    content=content,
                    content_hash=content_hash(content),
                    source=RevisionSource.ROLLOUT,
                    message="benchmark",
                )
            )
        PolicyRevision.objects.bulk_create(revisions, batch_size=1000)
        step = max(1, int(100 / drifted_percent)) if drifted_percent > 0 else 0
        for doc in objects[::step] if step else []:
            edited = {
                "apiVersion": doc["apiVersion"],
                "kind": doc["kind"],
                "metadata": {
                    "name": doc["metadata"]["name"],
                    "namespace": doc["metadata"]["namespace"],
                    "labels": {"edited-by": "someone"},
                },
            }
            kube.apply_object(cfg, edited, field_manager="kubectl-label", force=True)
        started = time.perf_counter()
        for kind in WATCHED_KINDS:  # the watcher's list (its watch would carry the edits the same way)
            items, version = list_raw(cfg, kind)
            inventory_replace(env.pk, kind, items, version)
        print(f"  (N = {n:,}: the watcher's list into the inventory {time.perf_counter() - started:.1f} s)")
        calls = {"list": 0, "get": 0}
        real_list, real_get = kube.list_objects, kube.get_object

        def counted_list(*a, **k):
            calls["list"] += 1
            return real_list(*a, **k)

        def counted_get(*a, **k):
            calls["get"] += 1
            return real_get(*a, **k)

        kube.list_objects, kube.get_object = counted_list, counted_get
        with CaptureQueriesContext(connection) as queries:
            started, cpu = time.perf_counter(), time.process_time()
            counts = drift_detect(environment=env)
            first, first_cpu = time.perf_counter() - started, time.process_time() - cpu
        lists = f"{calls['list']} lists, {calls['get']} GETs"
        started = time.perf_counter()
        again = drift_detect(environment=env)
        second = time.perf_counter() - started
        assert again["new"] == 0, again
    finally:
        meshsim.stop()
    namespaces = max(1, n // 20)
    return (
        f"| {n:,} | {namespaces} | {'cluster lists (inventory stale)' if stale_inventory else 'live inventory'} | "
        f"{first:.2f} | {first_cpu:.2f} | {lists} | {len(queries)} | {counts['checked']:,} | "
        f"{counts['drifted']} ({counts['new']}) | {second:.2f} |"
    )


if __name__ == "__main__":
    os.environ.setdefault("MESHGATE_KUBE_TIMEOUT_SECONDS", "60")
    sys.exit(main())

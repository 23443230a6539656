"""Times the change page of a change with 200 items (plan, diffs, guardrails, comments) in a temp DB.

    .venv/bin/python benchmarks/change_page.py [--items 200] [--runs 5] [--profile]

Creates a throwaway SQLite database (whatever DATABASE_URL says is replaced), the demo teams and an
environment, then a change in review with `--items` update items, each with a stored plan (live object
and side-by-side diff, as the worker stores them), guardrail results and a comment on every tenth
item. Renders `/changes/<id>/` as the approver through Django's test client (full request: middleware,
views, selectors, templates), once to warm up, then `--runs` times, and prints the median, the
number of queries and the page size. No cluster is needed: the page reads the stored plan.
`--profile` also prints a pyinstrument profile of one render (a dev tool, not a dependency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 2.0


def _setup_django(workdir: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings.test"
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'benchmark.sqlite3'}"
    os.environ["MESHGATE_VAR_DIR"] = str(workdir)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _organisation():
    from policies.choices import Role
    from tests.factories import (
        EnvironmentFactory,
        MembershipFactory,
        NamespaceOwnershipFactory,
        TeamFactory,
        UserFactory,
    )

    env = EnvironmentFactory(name="staging", order=10)
    team = TeamFactory(slug="bookinfo", name="Bookinfo")
    NamespaceOwnershipFactory(environment=env, namespace="bookinfo", team=team)
    author, approver = UserFactory(username="alice"), UserFactory(username="bob")
    MembershipFactory(team=team, user=author, role=Role.AUTHOR)
    MembershipFactory(team=team, user=approver, role=Role.APPROVER)
    return env, author, approver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp:
        _setup_django(Path(tmp))
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext, setup_test_environment

        setup_test_environment()  # the test client's host ("testserver") is allowed
        from tests.policies.changes.helpers import build_large_change

        env, author, approver = _organisation()
        started = time.perf_counter()
        change = build_large_change(environment=env, author=author, count=args.items)
        built = time.perf_counter() - started
        client = Client()
        client.force_login(approver)
        url = f"/changes/{change.pk}/"
        warm = client.get(url)
        assert warm.status_code == 200, warm.status_code
        timings = []
        for _ in range(args.runs):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                timings.append(time.perf_counter() - started)
            assert response.status_code == 200
        if args.profile:
            from pyinstrument import Profiler

            with Profiler() as profiler:
                client.get(url)
            profiler.print(show_all=False)

    median = statistics.median(timings)
    print(
        f"change: {args.items} items, built in {built:.2f} s; page {len(response.content) / 1024:.0f} KiB, "
        f"{len(queries.captured_queries)} queries"
    )
    print(f"runs: {', '.join(f'{t:.3f}' for t in timings)} s")
    print(
        f"median render of /changes/<id>/ with {args.items} items: {median:.3f} s "
        f"(target < {TARGET_SECONDS:.1f} s: {'ok' if median < TARGET_SECONDS else 'SLOW'})"
    )
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())

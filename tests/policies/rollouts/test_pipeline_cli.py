"""A CI/CD pipeline end to end, with nothing but the `meshgate` CLI and a service account's token,
against a live Meshgate (a real HTTP server), a real Celery worker, two meshsim clusters with
real-time traffic and a Prometheus scraping both: validate with SARIF, `apply --wait` on staging
(a bad canary exits 4 with the rollback reason, a good one completes), then `promote --wait` to
prod. A person (bob) approves each change while the pipeline waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from integrations import kubernetes as kube
from meshgate_cli import main as cli
from policies.choices import ChangeState, Role
from policies.cluster import cluster_config
from policies.models import ChangeRequest, Environment, NamespaceOwnership
from policies.normalize import normalize_object
from policies.selectors import change_items, change_latest_plan
from policies.services.imports import environment_import
from policies.services.plans import plan_is_current
from policies.services.reviews import review_approve
from policies.services.service_accounts import service_account_create
from policies.tasks import reconcile_rollouts
from tests.api_testing import token_for
from tests.factories import MembershipFactory, UserFactory
from tests.fixtures.prometheus import wait_for_window_after
from tests.policies.rollouts.helpers import REVIEWS_TO_V3, live_normalized
from tests.policies.rollouts.test_default_judge_end_to_end import both_clusters, prod_traffic  # noqa: F401

pytestmark = pytest.mark.worker

REPO = Path(__file__).resolve().parents[3]
PLAN = {
    "strategy": "canary",
    "steps": [50, 100],
    "analysis": {
        "interval_seconds": 5,
        "window": "10s",
        "judge": "threshold",
        "min_requests": 5,
        "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": None}],
    },
}
TIMEOUT = 150
BEAT = 2.0
WINDOW_SECONDS = 10  # PLAN["analysis"]["window"]


@pytest.fixture
def pipeline(
    transactional_db, monkeypatch, org, live_server, meshsim_traffic, prod_traffic, both_clusters, request, tmp_path
) -> Iterator[Any]:
    monkeypatch.delenv("MESHGATE_ROLLOUT_ANALYZER", raising=False)
    org.env.api_url, org.env.prometheus_url = meshsim_traffic.url, both_clusters.url
    org.env.save(update_fields=["api_url", "prometheus_url"])
    prod = Environment.objects.create(
        name="prod", display_name="Prod", order=20, api_url=prod_traffic.url, prometheus_url=both_clusters.url
    )
    NamespaceOwnership.objects.create(environment=prod, namespace="bookinfo", team=org.team_a)
    # prod holds the reviews routing staging had before the pipeline's change (so the promotion's
    # three-way merge has nothing to reconcile; tests/policies/changes/test_promotion_merge.py covers that)
    staging_reviews = kube.get_object(cluster_config(org.env), "VirtualService", "bookinfo", "reviews")
    prod_reviews = kube.get_object(cluster_config(prod), "VirtualService", "bookinfo", "reviews")
    prod_reviews["spec"] = staging_reviews["spec"]
    kube.apply_object(cluster_config(prod), normalize_object(prod_reviews), field_manager="kubectl", force=True)
    environment_import(environment=org.env)
    environment_import(environment=prod)
    both_clusters.wait_for_target_up()
    request.getfixturevalue("celery_worker_process")

    admin = UserFactory(username="tina")
    MembershipFactory(team=org.team_a, user=admin, role=Role.ADMIN)
    account = service_account_create(actor=admin, team=org.team_a, name="ci")
    token = token_for(account.user, ["write"])
    repo = tmp_path / "repo"
    (repo / "mesh").mkdir(parents=True)
    (repo / "mesh" / "reviews.yaml").write_text(yaml.safe_dump(REVIEWS_TO_V3, sort_keys=False))
    (repo / "plan.yaml").write_text(yaml.safe_dump(PLAN))

    class Pipeline:
        pass

    p = Pipeline()
    p.org, p.prod, p.repo, p.meshsim = org, prod, repo, meshsim_traffic
    p.env = {
        **os.environ,
        "MESHGATE_URL": live_server.url,
        "MESHGATE_TOKEN": token,
        "MESHGATE_CONFIG": str(tmp_path / "none.toml"),
        "PYTHONPATH": str(REPO),
    }
    yield p
    meshsim_traffic.admin("DELETE", "traffic/faults").raise_for_status()


def run_cli(p: Any, *argv: str, approve: bool = True) -> tuple[int, str]:
    """Runs `meshgate` as the pipeline would, while bob approves what waits for him and beat ticks."""
    out = p.repo / f"out-{time.monotonic_ns()}.log"
    with out.open("w") as stream:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshgate_cli", *argv],
            cwd=p.repo,
            env=p.env,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + TIMEOUT
        next_beat = 0.0
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"meshgate {' '.join(argv)} still running after {TIMEOUT}s:\n{out.read_text()}")
            if approve:
                _approve_what_waits(p)
            if time.monotonic() >= next_beat:
                reconcile_rollouts.delay()
                next_beat = time.monotonic() + BEAT
            time.sleep(0.3)
    return proc.returncode, out.read_text()


def _approve_what_waits(p: Any) -> None:
    for change in ChangeRequest.objects.filter(state=ChangeState.IN_REVIEW):
        plan = change_latest_plan(change=change)
        if plan is not None and plan_is_current(change=change, plan=plan, items=list(change_items(change=change))):
            if not change.reviews.filter(reviewer=p.org.approver, voided_at__isnull=True).exists():
                review_approve(reviewer=p.org.approver, change=change, body="looks right")


def test_validate_apply_and_promote_with_the_cli_only(pipeline):
    p = pipeline
    # validate, as a pull request's job would
    code, output = run_cli(
        p, "validate", "-f", "mesh", "--env", "staging", "--format", "sarif", "-o", "report.sarif", approve=False
    )
    assert code == cli.EXIT_OK, output
    assert json.loads((p.repo / "report.sarif").read_text())["version"] == "2.1.0"

    # a bad canary: v3 answers 503 to everything; the pipeline fails with the reason
    before = live_normalized(p.org.env, "VirtualService", "bookinfo", "reviews")
    p.meshsim.admin(
        "POST",
        "traffic/faults",
        json={"namespace": "bookinfo", "service": "reviews", "version": "v3", "error_rate": 1.0, "status": 503},
    ).raise_for_status()
    code, output = run_cli(
        p,
        "apply",
        "-f",
        "mesh",
        "--env",
        "staging",
        "--title",
        "reviews to v3",
        "--rollout-options",
        "plan.yaml",
        "--commit",
        "abcdef1",
        "--wait",
        "--timeout",
        "140s",
    )
    assert code == cli.EXIT_CHANGE_FAILED, output
    assert "rolled_back" in output and "rollback reason" in output, output
    assert live_normalized(p.org.env, "VirtualService", "bookinfo", "reviews") == before

    # the fault fixed: the same commit again as a new change completes
    p.meshsim.admin("DELETE", "traffic/faults").raise_for_status()
    wait_for_window_after(p.org.env.prometheus_url, time.time(), WINDOW_SECONDS)  # the failed requests are out of it
    code, output = run_cli(
        p,
        "apply",
        "-f",
        "mesh",
        "--env",
        "staging",
        "--title",
        "reviews to v3, again",
        "--rollout-options",
        "plan.yaml",
        "--commit",
        "abcdef2",
        "--wait",
        "--timeout",
        "140s",
        "--json",
    )
    assert code == cli.EXIT_OK, output
    staging_change = json.loads(output[output.index("{") :])
    assert staging_change["outcome"] == "succeeded"
    assert ChangeRequest.objects.get(pk=staging_change["id"]).commit_sha == "abcdef2"

    # promote to prod and wait for its rollout there
    code, output = run_cli(p, "promote", str(staging_change["id"]), "--wait", "--timeout", "140s")
    assert code == cli.EXIT_OK, output
    promoted = ChangeRequest.objects.get(promoted_from_id=staging_change["id"])
    assert promoted.environment == p.prod and promoted.state == ChangeState.COMPLETED
    assert promoted.author.username == "sa.ci" and promoted.commit_sha == "abcdef2"

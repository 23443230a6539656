"""schemathesis over the whole API: a live test server on 127.0.0.1 with a seeded organisation and a
token that may read and write; every generated request must answer without a server error and in
the shape the OpenAPI schema declares. Marked `schemathesis` and run once in CI (`.ci/run`), with a
time budget.

Objects of every resource with an id in its path (a draft, a submitted change, a paused rollout, a
channel, a service account, an approval rule, a spare token, …) are seeded, and the hooks of
`tests/api_fuzz/hooks.py` point most generated path parameters at them, so `{id}` operations reach
real rows, not only 404s."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from policies.choices import NotificationChannelKind, Role, RolloutState
from policies.models import ApprovalRule, NotificationChannel
from policies.services.drafts import draft_save
from policies.services.service_accounts import service_account_create
from portal.choices import TokenScope
from portal.models import ApiToken
from tests.api_testing import token_for
from tests.factories import MembershipFactory, UserFactory
from tests.policies.changes.helpers import AUTHZ_RATINGS, REVIEWS_V2, submitted_change
from tests.policies.drafts.helpers import cluster_org  # noqa: F401 - fixture
from tests.policies.rollouts.test_pages import make_rollout

ROOT = Path(__file__).resolve().parents[2]
BUDGET_SECONDS = int(os.environ.get("MESHGATE_SCHEMATHESIS_SECONDS", "150"))


def seed(org) -> dict[str, dict[str, list]]:
    """Objects the token's owner (alice, an author of Bookinfo) may reach, by resource and path
    parameter, for `hooks.map_path_parameters` (a DELETE gets the first of each list only)."""
    admin = UserFactory(username="tara")
    MembershipFactory(team=org.team_a, user=admin, role=Role.ADMIN)
    changes = [submitted_change(org, title=f"fuzz {number}").pk for number in range(2)]
    drafts = [
        draft_save(author=org.author, environment=org.env, text=text).draft.pk for text in (REVIEWS_V2, AUTHZ_RATINGS)
    ]
    rollouts = [make_rollout(org, state=RolloutState.PAUSED, title="fuzz rollout").pk]
    channels = [
        NotificationChannel.objects.create(
            name=f"fuzz-{number}", user=org.author, kind=NotificationChannelKind.EMAIL, target="a@example.com"
        ).pk
        for number in range(2)
    ]
    accounts = [
        service_account_create(actor=admin, team=org.team_a, name=f"fuzz-{number}", role=Role.AUTHOR).name
        for number in range(2)
    ]
    rules = [
        ApprovalRule.objects.create(environment=org.env, kind=kind, required_approvals=1).pk
        for kind in ("", "VirtualService")
    ]
    for _ in range(2):  # spare tokens: deleting one leaves the run's own
        token_for(org.author, scopes=[TokenScope.READ])
    spare = list(ApiToken.objects.filter(user=org.author).order_by("-pk").values_list("key_id", flat=True)[:2])
    return {
        "approval-rules": {"id": rules},
        "changes": {"id": changes},
        "channels": {"id": channels},
        "drafts": {"id": drafts},
        "environments": {"name": [org.env.name]},
        "policies": {"id": [org.policy_a.pk], "policy_id": [org.policy_a.pk], "number": [1]},
        "rollouts": {"id": rollouts},
        "service-accounts": {"name": accounts},
        "teams": {"slug": [org.team_a.slug], "username": ["alice", "bob"]},
        "tokens": {"key_id": spare},
    }


def with_seeded_examples(document: dict, seeds: dict[str, dict[str, list]]) -> dict:
    """The schema with a seeded value as the `example` of each path parameter, so the examples and
    coverage phases (which the mapping hook does not reach) start from real objects too."""
    for path, operations in document["paths"].items():
        found = seeds.get(path.split("/")[3] if path.startswith("/api/v1/") else "", {})
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                values = found.get(parameter.get("name")) if parameter.get("in") == "path" else None
                if values:
                    parameter["example"] = values[-1]
    return document


# A seeded object of each resource is read at least once (GET answers 200): the ids reach real rows.
READ_BY_ID = [
    "/api/v1/approval-rules/{id}/",
    "/api/v1/changes/{id}/",
    "/api/v1/changes/{id}/status/",
    "/api/v1/channels/{id}/",
    "/api/v1/drafts/{id}/",
    "/api/v1/environments/{name}/",
    "/api/v1/policies/{id}/",
    "/api/v1/policies/{policy_id}/revisions/{number}/",
    "/api/v1/rollouts/{id}/",
    "/api/v1/service-accounts/{name}/",
    "/api/v1/teams/{slug}/members/{username}/",
]  # not `/tokens/{key_id}/`: tokens are managed with a session, and the run uses a token


@pytest.mark.schemathesis
def test_the_api_holds_under_schemathesis(transactional_db, cluster_org, live_server, tmp_path, settings):
    org = cluster_org
    # A change's event stream answers for up to MESHGATE_EVENT_STREAM_SECONDS: here it ends well within
    # the request timeout below, so schemathesis checks its answers like any other endpoint's.
    settings.MESHGATE_EVENT_STREAM_SECONDS = 2
    token = token_for(org.author, scopes=list(TokenScope.values))
    seeds = seed(org)
    calls = tmp_path / "calls.txt"
    st = Path(sys.executable).parent / "st"
    schema = tmp_path / "openapi.json"
    fetched = requests.get(f"{live_server.url}/api/schema/?format=json", timeout=120)
    assert fetched.status_code == 200
    schema.write_text(json.dumps(with_seeded_examples(fetched.json(), seeds)))
    command = [
        str(st),
        "run",
        str(schema),
        "--url",
        live_server.url,
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "-H",
        f"Authorization: Bearer {token}",
        "--max-examples",
        "8",
        "--max-time",
        str(BUDGET_SECONDS),
        "--workers",
        "1",
        "--seed",
        "12",
        "--request-timeout",
        "20",
        "--phases",
        "examples,coverage,fuzzing",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=BUDGET_SECONDS + 120,
        env={
            **os.environ,
            "NO_COLOR": "1",
            "SCHEMATHESIS_HOOKS": "tests.api_fuzz.hooks",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
            "MESHGATE_FUZZ_SEEDS": json.dumps(seeds),
            "MESHGATE_FUZZ_LOG": str(calls),
        },
    )
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-12000:]
    answered: dict[str, set[int]] = {}
    for line in calls.read_text().splitlines():
        method, path, code = line.split(" ")
        if method == "GET":
            answered.setdefault(path, set()).add(int(code))
    unread = [path for path in READ_BY_ID if 200 not in answered.get(path, set())]
    assert not unread, f"no seeded object was read through {unread}: {answered}"

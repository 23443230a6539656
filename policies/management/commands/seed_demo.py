"""Demo organization: two environments on the simulated clusters, teams, users, imported policies,
and two rollouts on staging that the worker runs as soon as it starts (see DEMO_CHANGES)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import requests
import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from policies.choices import ClusterAuth, Role, RolloutStrategy
from policies.models import ChangeRequest, Environment, Policy
from policies.services.changes import change_create, change_schedule, change_submit
from policies.services.drafts import draft_save
from policies.services.guardrails import seed_governance
from policies.services.organization import (
    environment_upsert,
    namespace_assign,
    team_member_set,
    team_upsert,
)
from policies.services.reviews import review_approve
from policies.services.rollouts import rollout_start

DEMO_PASSWORD = "meshgate-demo"
TEAMS = [
    ("bookinfo", "Bookinfo", False, "Product pages, reviews and ratings."),
    ("shop", "Shop", False, "Storefront, catalog, cart, checkout and payments."),
    ("security", "Security", True, "Reviews every security policy; sees the whole mesh."),
    ("platform", "Platform", False, "Runs the mesh: gateways and mesh-wide defaults."),
]
NAMESPACES = {"bookinfo": "bookinfo", "shop": "shop", "payments": "shop", "istio-system": "platform"}
# (username, full name, team, role, superuser)
USERS = [
    ("alice", "Alice Author", "bookinfo", Role.AUTHOR, False),
    ("bob", "Bob Approver", "bookinfo", Role.APPROVER, False),
    ("carol", "Carol Shop", "shop", Role.AUTHOR, False),
    ("dan", "Dan Shop-Approver", "shop", Role.APPROVER, False),
    ("sam", "Sam Security", "security", Role.APPROVER, False),
    ("ada", "Ada Admin", "platform", Role.ADMIN, True),
    # A second approver per team: production asks for one more approval than staging.
    ("erin", "Erin Approver", "bookinfo", Role.APPROVER, False),
    ("finn", "Finn Shop-Approver", "shop", Role.APPROVER, False),
    ("pat", "Pat Platform", "platform", Role.APPROVER, False),
]

# The regression the demo shows: on staging, reviews v3 answers 503 to 30 % of its requests. It is a
# fault profile of meshsim's simulated traffic, kept in memory, so it is set again at every start.
REVIEWS_V3_FAULT = {"service": "reviews", "namespace": "bookinfo", "version": "v3", "error_rate": 0.3, "status": 503}
# Short analysis intervals, so that a person sees both rollouts end within a minute or two. Without
# a Prometheus, each interval advances meshsim's traffic clock by a minute instead of waiting for it.
DEMO_ANALYSIS = {
    "interval_seconds": 10,
    "failure_limit": 2,
    "meshsim_advance_seconds": 60,
    "metrics": [{"kind": "success_rate", "min": 0.95, "guard_min": 0.9}, {"kind": "latency_p99", "max": 1000}],
}
DEMO_STEPS = [10, 25, 50, 100]


@dataclass(frozen=True)
class DemoChange:
    """A change on staging moving a VirtualService's traffic to one subset, created, reviewed,
    scheduled and started like people would: `author` drafts and submits, `approver` approves,
    schedules and starts the canary rollout."""

    title: str
    description: str
    author: str
    approver: str
    namespace: str
    name: str
    subset: str


DEMO_CHANGES = [
    DemoChange(
        title="Send reviews traffic to v3",
        description="Moves every reviews request to v3. On staging v3 answers 503 to 30 % of its requests: "
        "the canary analysis fails and the rollout rolls back by itself.",
        author="alice",
        approver="bob",
        namespace="bookinfo",
        name="reviews",
        subset="v3",
    ),
    DemoChange(
        title="Send payments traffic to v2",
        description="Moves every payments request to v2, which is healthy: the canary promotes to 100 %.",
        author="carol",
        approver="dan",
        namespace="shop",
        name="payments",
        subset="v2",
    ),
]


class Command(BaseCommand):
    help = "Creates the demo teams, users and environments and imports the clusters' policies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--staging-url", required=True, help="Kubernetes API URL of the staging cluster")
        parser.add_argument("--prod-url", required=True, help="Kubernetes API URL of the prod cluster")
        parser.add_argument("--prometheus-url", default="", help="Prometheus URL for both environments")
        parser.add_argument("--no-import", action="store_true", help="skip importing from the clusters")
        parser.add_argument(
            "--no-rollouts",
            action="store_true",
            help="skip the two demo changes rolled out on staging (and the traffic fault)",
        )

    def handle(
        self,
        *args: Any,
        staging_url: str,
        prod_url: str,
        prometheus_url: str,
        no_import: bool,
        no_rollouts: bool,
        **options: Any,
    ) -> None:
        with transaction.atomic():
            environments = [
                environment_upsert(
                    name="staging",
                    display_name="Staging",
                    order=10,
                    is_production=False,
                    auth_mode=ClusterAuth.TOKEN,
                    api_url=staging_url,
                    prometheus_url=prometheus_url,
                ),
                environment_upsert(
                    name="prod",
                    display_name="Production",
                    order=20,
                    is_production=True,
                    auth_mode=ClusterAuth.TOKEN,
                    api_url=prod_url,
                    prometheus_url=prometheus_url,
                ),
            ]
            teams = {
                slug: team_upsert(slug=slug, name=name, is_security=security, description=description)
                for slug, name, security, description in TEAMS
            }
            for environment in environments:
                for namespace, team in NAMESPACES.items():
                    namespace_assign(environment=environment, namespace=namespace, team=teams[team])
            for username, full_name, team, role, superuser in USERS:
                user = self._user(username, full_name, superuser)
                team_member_set(team=teams[team], user=user, role=role)
            seed_governance()
        if not no_import:
            call_command("import_environment", *(env.name for env in environments), stdout=self.stdout)
            if not no_rollouts:
                self._traffic_fault(environments[0], REVIEWS_V3_FAULT)
                scheduled = [(spec, self._demo_change(environments[0], spec)) for spec in DEMO_CHANGES]
                # Started once every change is scheduled: the worker then computes the plans the
                # submits asked for before it writes the first canary step.
                for spec, change in scheduled:
                    if change is not None:
                        self._demo_rollout(spec, change)

    def _traffic_fault(self, environment: Environment, fault: dict) -> None:
        """Sets the fault profile on the simulated cluster unless it holds it already."""
        url = f"{environment.api_url.rstrip('/')}/meshsim/traffic/faults"
        headers = {"Authorization": f"Bearer {environment.api_token}"} if environment.api_token else {}
        keys = ("service", "namespace", "version")
        response = requests.get(url, headers=headers, timeout=10)
        response.raise_for_status()
        if any(all(f.get(k) == fault[k] for k in keys) for f in response.json().get("faults", [])):
            return
        requests.post(url, json=fault, headers=headers, timeout=10).raise_for_status()
        self.stdout.write(
            f"{environment.name}: {fault['service']} {fault['version']} answers {fault['status']} "
            f"to {fault['error_rate']:.0%} of its requests"
        )

    def _demo_change(self, environment: Environment, spec: DemoChange) -> ChangeRequest | None:
        """Drafts, submits, approves and schedules one demo change, once (by its title); None when it exists."""
        if ChangeRequest.objects.filter(environment=environment, title=spec.title).exists():
            return None
        author, approver = self._users(spec)
        policy = Policy.objects.select_related("current_revision").get(
            environment=environment, kind="VirtualService", namespace=spec.namespace, name=spec.name
        )
        assert policy.current_revision is not None, policy
        content = copy.deepcopy(policy.current_revision.content)
        for route in content["spec"]["http"]:
            route["route"] = [{"destination": {"host": spec.name, "subset": spec.subset}}]
        text = yaml.safe_dump(content, sort_keys=False)
        draft = draft_save(
            author=author, environment=environment, text=text, message=f"all {spec.name} traffic to {spec.subset}"
        ).draft
        change = change_create(
            author=author, environment=environment, drafts=[draft], title=spec.title, description=spec.description
        )
        change = change_submit(actor=author, change=change)
        review_approve(reviewer=approver, change=change, body="Looks right; the canary will tell.")
        return change_schedule(actor=approver, change=ChangeRequest.objects.get(pk=change.pk))

    def _demo_rollout(self, spec: DemoChange, change: ChangeRequest) -> None:
        """The approver starts the canary rollout with the demo's steps and short analysis intervals."""
        _, approver = self._users(spec)
        rollout = rollout_start(
            change=change, actor=approver, strategy=RolloutStrategy.CANARY, steps=DEMO_STEPS, analysis=DEMO_ANALYSIS
        )
        self.stdout.write(
            f"{change.environment.name}: change #{change.pk} “{spec.title}” is rolling out (rollout #{rollout.pk})"
        )

    def _users(self, spec: DemoChange) -> tuple[User, User]:
        users = get_user_model().objects.in_bulk([spec.author, spec.approver], field_name="username")
        return users[spec.author], users[spec.approver]

    def _user(self, username: str, full_name: str, superuser: bool) -> User:
        first, _, last = full_name.partition(" ")
        user, created = get_user_model().objects.get_or_create(
            username=username,
            defaults={"first_name": first, "last_name": last, "email": f"{username}@example.com"},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.is_superuser = user.is_staff = superuser
            user.save()
        return user

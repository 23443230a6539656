"""Demo organization: two environments on the simulated clusters, teams, users, imported policies."""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import transaction

from policies.choices import ClusterAuth, Role
from policies.services.guardrails import seed_governance
from policies.services.organization import environment_upsert, namespace_assign, team_member_set, team_upsert

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
]


class Command(BaseCommand):
    help = "Creates the demo teams, users and environments and imports the clusters' policies."

    def add_arguments(self, parser):
        parser.add_argument("--staging-url", required=True, help="Kubernetes API URL of the staging cluster")
        parser.add_argument("--prod-url", required=True, help="Kubernetes API URL of the prod cluster")
        parser.add_argument("--prometheus-url", default="", help="Prometheus URL for both environments")
        parser.add_argument("--no-import", action="store_true", help="skip importing from the clusters")

    def handle(self, *args, staging_url, prod_url, prometheus_url, no_import, **options):
        with transaction.atomic():
            environments = [
                environment_upsert(
                    name="staging", display_name="Staging", order=10, is_production=False,
                    auth_mode=ClusterAuth.TOKEN, api_url=staging_url, prometheus_url=prometheus_url,
                ),
                environment_upsert(
                    name="prod", display_name="Production", order=20, is_production=True,
                    auth_mode=ClusterAuth.TOKEN, api_url=prod_url, prometheus_url=prometheus_url,
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

    def _user(self, username: str, full_name: str, superuser: bool):
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

"""Service accounts from the command line (for bootstrapping a pipeline before anyone signs in).

    manage.py service_account create NAME --team SLUG [--role author|approver] --by ADMIN
    manage.py service_account token NAME --token-name github-actions [--days 90] [--scope read --scope write] --by ADMIN
    manage.py service_account revoke NAME --by ADMIN
    manage.py service_account list

`--by` names the admin the audit log records as the actor (a superuser, or an admin of the team).
The token is printed once and stored only as a digest.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.exceptions import ApplicationError
from policies.models import ServiceAccount, Team
from policies.services import service_accounts as services


class Command(BaseCommand):
    help = "Create, issue tokens for, revoke and list service accounts."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create")
        create.add_argument("name")
        create.add_argument("--team", required=True)
        create.add_argument("--role", default="author", choices=[r.value for r in services.ROLES])
        create.add_argument("--description", default="")
        create.add_argument("--by", required=True)
        token = actions.add_parser("token")
        token.add_argument("name")
        token.add_argument("--token-name", required=True)
        token.add_argument("--days", type=int, default=90)
        token.add_argument("--scope", action="append", choices=["read", "write"])
        token.add_argument("--by", required=True)
        revoke = actions.add_parser("revoke")
        revoke.add_argument("name")
        revoke.add_argument("--by", required=True)
        actions.add_parser("list")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "list":
                for account in ServiceAccount.objects.select_related("user", "team"):
                    state = "active" if account.is_active else f"revoked {account.revoked_at:%Y-%m-%d}"
                    self.stdout.write(f"{account.name}\t{account.team.slug}\t{state}")
                return
            actor = self._user(options["by"])
            if action == "create":
                team = Team.objects.filter(slug=options["team"]).first()
                if team is None:
                    raise CommandError(f"no team {options['team']}")
                account = services.service_account_create(
                    actor=actor,
                    team=team,
                    name=options["name"],
                    role=options["role"],
                    description=options["description"],
                )
                self.stdout.write(f"created {account.name} in {team.slug}")
            elif action == "token":
                _, plaintext = services.service_account_token_create(
                    actor=actor,
                    account=self._account(options["name"]),
                    name=options["token_name"],
                    scopes=options["scope"] or ["read", "write"],
                    expires_in_days=options["days"],
                )
                self.stdout.write(plaintext)
            elif action == "revoke":
                account = services.service_account_revoke(actor=actor, account=self._account(options["name"]))
                self.stdout.write(f"revoked {account.name}")
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc

    def _user(self, username: str) -> Any:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username}")
        return user

    def _account(self, name: str) -> ServiceAccount:
        username = name if name.startswith(services.PREFIX) else services.PREFIX + name
        account = ServiceAccount.objects.select_related("user", "team").filter(user__username=username).first()
        if account is None:
            raise CommandError(f"no service account {username}")
        return account

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from policies.exceptions import ClusterError
from policies.models import Environment
from policies.services.imports import environment_import


class Command(BaseCommand):
    help = "Imports every supported Istio object of an environment's cluster as current revisions."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("environments", nargs="*", help="environment names (default: all)")

    def handle(self, *args: Any, environments: list[str], **options: Any) -> None:
        queryset = Environment.objects.all()
        if environments:
            queryset = queryset.filter(name__in=environments)
            missing = set(environments) - set(queryset.values_list("name", flat=True))
            if missing:
                raise CommandError(f"unknown environment(s): {', '.join(sorted(missing))}")
        for environment in queryset:
            try:
                result = environment_import(environment=environment)
            except ClusterError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(
                f"{environment.name}: {result.seen} objects, {result.new_revisions} new revisions, "
                f"{result.unchanged} unchanged, {result.gone} gone"
                + (
                    f", {len(result.in_rollout)} left to active rollouts ({', '.join(result.in_rollout)})"
                    if result.in_rollout
                    else ""
                )
            )

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from policies.services.audit import audit_verify_chain


class Command(BaseCommand):
    help = "Verifies the audit log's hash chain and names the first row that is broken."

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_verify_chain()
        if not report.ok:
            raise CommandError(
                f"audit chain BROKEN at row #{report.broken_sequence}: {report.reason} "
                f"({report.checked} rows verified before it)"
            )
        self.stdout.write(self.style.SUCCESS(f"audit chain OK: {report.checked} rows verified"))

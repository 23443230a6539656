from django.apps import AppConfig
from django.db.backends.signals import connection_created


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        from policies import db_guards

        connection_created.connect(db_guards.register, dispatch_uid="meshgate-delete-guard")

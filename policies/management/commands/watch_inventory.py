"""Keeps the live inventory of every environment current: one informer (list, then watch with
bookmarks, re-list on 410 Gone) per (environment, kind), in threads of this one process.

Run exactly one (dev.py run, the compose file and the k8s manifests start one). Environments added
later are picked up on the next scan (--rescan-seconds)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from integrations.kubernetes.watch import WATCHED_KINDS, WatchEvent, run_informer
from policies.choices import ClusterAuth
from policies.cluster import cluster_config
from policies.models import Environment, InventoryWatermark
from policies.services.inventory import inventory_apply, inventory_replace

logger = logging.getLogger("policies.inventory")


class _Sink:
    def __init__(self, environment_id: int) -> None:
        self.environment_id = environment_id

    def replace(self, kind: str, items: list[dict[str, Any]], resource_version: str) -> None:
        close_old_connections()
        inventory_replace(self.environment_id, kind, items, resource_version)
        logger.info("inventory %s/%s listed: %d objects at %s", self.environment_id, kind, len(items), resource_version)

    def apply(self, kind: str, events: list[WatchEvent], resource_version: str) -> None:
        close_old_connections()
        inventory_apply(self.environment_id, kind, [(e.type, e.object) for e in events], resource_version)


class Command(BaseCommand):
    help = "Watches every environment's cluster and keeps the live inventory current (runs until stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--environment", action="append", default=[], help="only these environments (names)")
        parser.add_argument("--rescan-seconds", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        threads: dict[tuple[int, str], threading.Thread] = {}
        while not stop.is_set():
            environments = Environment.objects.all()
            if options["environment"]:
                environments = environments.filter(name__in=options["environment"])
            for environment in environments:
                if environment.auth_mode == ClusterAuth.TOKEN and not environment.api_url:
                    continue
                marks = dict(
                    InventoryWatermark.objects.filter(environment=environment).values_list("kind", "resource_version")
                )
                for kind in WATCHED_KINDS:
                    key = (environment.pk, kind)
                    if key in threads and threads[key].is_alive():
                        continue
                    thread = threading.Thread(
                        target=run_informer,
                        name=f"inventory-{environment.name}-{kind}",
                        daemon=True,
                        args=(cluster_config(environment), kind, _Sink(environment.pk)),
                        kwargs={
                            "stop": stop,
                            "resource_version": marks.get(kind, ""),
                            "watch_timeout": settings.MESHGATE_INVENTORY_WATCH_SECONDS,
                            "on_error": lambda exc, name=environment.name, kind=kind: logger.warning(
                                "inventory %s/%s: %s", name, kind, exc
                            ),
                        },
                    )
                    thread.start()
                    threads[key] = thread
            self.stdout.write(f"watching {len(threads)} (environment, kind) pairs", ending="\n")
            self.stdout.flush()
            stop.wait(options["rescan_seconds"])
        for thread in threads.values():
            thread.join(timeout=1)  # a thread in a watch read ends with the process (daemon)

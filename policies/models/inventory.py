"""The live inventory: what the cluster of each environment holds, kept current by a watch.

One row per live object (trimmed to what the checks read) and one watermark per (environment,
kind): the resourceVersion the rows reflect and when the watcher last confirmed them current.
Every web and worker process reads the same rows; only the watcher (`manage.py watch_inventory`)
writes them.
"""

from django.db import models

from policies.models.environment import Environment


class InventoryObject(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=64)
    namespace = models.CharField(max_length=253, blank=True)
    name = models.CharField(max_length=253)
    resource_version = models.CharField(max_length=64)
    content = models.JSONField()
    # Of the Istio kinds: the hash of the normalized content (`policies.normalize.content_hash`), which
    # the drift sweep compares with the applied revision's without loading either; "" for other kinds
    # (and rows written before the column, which the sweep hashes from `content`).
    content_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "kind", "namespace", "name"], name="inventory_object_identity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}@{self.resource_version}"


class InventoryWatermark(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=64)
    resource_version = models.CharField(max_length=64)
    listed_at = models.DateTimeField()
    # the last time the watcher saw an event, a bookmark or a quiet watch end: the rows were current then
    synced_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "kind"], name="inventory_watermark_identity"),
        ]

    def __str__(self) -> str:
        return f"{self.environment_id}/{self.kind}@{self.resource_version}"

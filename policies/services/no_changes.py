"""No changes: a new change whose every item equals live after normalization, like `terraform plan`.

`NoChanges` is raised (and answered 200 with code `no_changes`): nothing is stored, nothing goes to
review. A cluster that cannot be read is never "no changes".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from integrations import kubernetes as kube
from policies.choices import DraftOperation
from policies.cluster import cluster_config
from policies.exceptions import ApplicationError
from policies.models import Environment
from policies.normalize import normalize_object


class NoChanges(ApplicationError):
    """Every item equals the live object: there is nothing to review or roll out."""

    code = "no_changes"
    status = 200


def unchanged_against_live(
    *, environment: Environment, objects: Sequence[tuple[str, str, str, dict[str, Any] | None]]
) -> list[str] | None:
    """The labels of the objects when every one equals live after normalization (a `None` content: a
    deletion of an absent object), else None. A cluster that cannot be read is never "no changes"."""
    cfg = cluster_config(environment)
    labels = []
    for kind, namespace, name, content in objects:
        try:
            live: dict[str, Any] | None = kube.get_object(cfg, kind, namespace, name)
        except kube.NotFound:
            live = None
        except kube.KubernetesError:
            return None
        if (normalize_object(live) if live is not None else None) != (
            normalize_object(content) if content is not None else None
        ):
            return None
        labels.append(f"{kind} {namespace}/{name}")
    return labels or None


def raise_if_no_changes(*, environment: Environment, drafts: Sequence[Any]) -> None:
    objects = [
        (d.kind, d.namespace, d.name, None if d.operation == DraftOperation.DELETE else d.content) for d in drafts
    ]
    labels = unchanged_against_live(environment=environment, objects=objects)
    if labels:
        raise NoChanges(
            f"no changes: {len(labels)} object(s) already equal the live cluster in {environment.name}",
            extra={"items": labels},
        )

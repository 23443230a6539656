"""What the validation engine reports: one Finding per problem, at the file, document, line and field."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from django.db import models


class Level(models.TextChoices):
    ERROR = "error", "Error"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class Layer(models.TextChoices):
    PARSE = "parse", "Parse"
    SCHEMA = "schema", "Schema"
    SEMANTIC = "semantic", "Cross-resource"
    DRYRUN = "dryrun", "Server dry-run"
    PERMISSION = "permission", "Permission"
    GUARDRAIL = "guardrail", "Guardrail"


LAYER_ORDER = {layer.value: position for position, layer in enumerate(Layer)}


@dataclass(frozen=True)
class Finding:
    code: str
    level: Level
    message: str
    layer: str
    file: str = ""
    document: int | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""
    object: str = ""
    istio_code: str = ""  # the matching `istioctl analyze` message code (e.g. IST0101), when there is one

    @property
    def is_error(self) -> bool:
        return self.level == Level.ERROR

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["level"] = str(self.level.value if isinstance(self.level, Level) else self.level)
        data["layer"] = str(self.layer)
        return data

    def sort_key(self, file_order: dict[str, int]) -> tuple:
        return (
            file_order.get(self.file, -1),
            -1 if self.document is None else self.document,
            self.line or 0,
            self.column or 0,
            LAYER_ORDER.get(self.layer, 99),
            self.code,
            self.path,
        )


def sort_findings(findings: list[Finding], files: list[str]) -> list[Finding]:
    """By file (in bundle order; bundle-wide findings first), document, line, column, layer."""
    order: dict[str, int] = {}
    for position, name in enumerate(files):
        order.setdefault(name, position)
    return sorted(findings, key=lambda finding: finding.sort_key(order))

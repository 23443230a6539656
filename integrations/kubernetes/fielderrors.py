"""Field errors as the Kubernetes API reports them (``k8s.io/apimachinery`` ``field.Error``).

Shared by the structural-schema validator (used by Meshgate's validation and by meshsim) and by
meshsim's ``Status`` bodies, so messages read exactly like a real kube-apiserver's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any


class ErrorType(Enum):
    """A ``field.ErrorType``: the cause ``reason`` and the message label."""

    REQUIRED = ("FieldValueRequired", "Required value")
    INVALID = ("FieldValueInvalid", "Invalid value")
    TYPE_INVALID = ("FieldValueTypeInvalid", "Invalid value")
    NOT_SUPPORTED = ("FieldValueNotSupported", "Unsupported value")
    DUPLICATE = ("FieldValueDuplicate", "Duplicate value")
    TOO_LONG = ("FieldValueTooLong", "Too long")
    TOO_MANY = ("FieldValueTooMany", "Too many")
    FORBIDDEN = ("FieldValueForbidden", "Forbidden")
    UNKNOWN_FIELD = ("FieldValueInvalid", "Unknown field")

    @property
    def reason(self) -> str:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]


_BODY_WITHOUT_VALUE = {ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG}


def format_value(value: Any) -> str:
    """Render a bad value the way ``field.Error`` prints it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class FieldError:
    """One invalid field, as in ``k8s.io/apimachinery/pkg/util/validation/field``."""

    type: ErrorType
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        if self.type is ErrorType.UNKNOWN_FIELD:
            return self.detail
        if self.type in _BODY_WITHOUT_VALUE:
            text = self.type.label
        else:
            text = f"{self.type.label}: {format_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def message(self) -> str:
        return f"{self.field}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.type.reason, "message": self.body(), "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(ErrorType.REQUIRED, path, None, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(ErrorType.INVALID, path, value, detail)


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    listed = ", ".join(format_value(item) for item in allowed)
    return FieldError(ErrorType.NOT_SUPPORTED, path, value, f"supported values: {listed}")

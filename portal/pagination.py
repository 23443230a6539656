"""The API's pagination: `?limit=` and `?offset=` are bounded, and anything else is a 400."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 2**31 - 1


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500

    def _bounded(self, request: Request, name: str, upper: int, default: int | None) -> int | None:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        if len(raw) > 12 or not raw.isdigit():
            raise ValidationError({name: [f"a whole number from 0 to {upper:,}"]})
        value = int(raw)
        if value > upper:
            raise ValidationError({name: [f"at most {upper:,}"]})
        return value

    def get_limit(self, request: Request) -> int | None:
        limit = self._bounded(request, self.limit_query_param, self.max_limit, self.default_limit)
        return self.default_limit if limit == 0 else limit

    def get_offset(self, request: Request) -> int:
        return self._bounded(request, self.offset_query_param, MAX_OFFSET, 0) or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_limit})
            if parameter["name"] == self.offset_query_param:
                parameter["schema"].update({"minimum": 0, "maximum": MAX_OFFSET})
        return parameters

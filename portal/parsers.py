"""The API's JSON parser: bad JSON of any shape is a 400 with what was wrong, never a 500.

DRF's parser already answers 400 for syntax errors and integers over Python's 4,300-digit
conversion limit; this one also turns nesting deep enough to exhaust the parser's recursion into a
400, and refuses `NaN`, `Infinity` and numbers that overflow to infinity (`1e400`), which JSON does
not have and no database column stores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_BODY_NESTING = 128
"""Deeper than any API body needs (a manifest as JSON is about 15 levels; the parse layer allows 100)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def _depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not {encoding}: {exc}") from exc
        if _depth(text) > MAX_BODY_NESTING:
            raise ParseError(f"JSON parse error - the body is nested more than {MAX_BODY_NESTING} levels deep")
        try:
            return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        except RecursionError as exc:  # pragma: no cover - the depth check comes first
            raise ParseError("JSON parse error - the body is nested too deeply") from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

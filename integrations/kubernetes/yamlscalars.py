"""YAML scalars read the way Kubernetes reads them.

kubectl and the API server turn YAML into JSON with sigs.k8s.io/yaml, whose decoder is a fork of
go-yaml v2. Its rules for plain (unquoted) scalars are neither YAML 1.1 (which PyYAML follows) nor
strict YAML 1.2:

- booleans: ``true``/``True``/``TRUE``, ``false``/..., and also ``yes``/``no``, ``on``/``off``, ``y``/``n``
  in their three casings (so ``value: yes`` is a boolean for kubectl too);
- null: empty, ``~``, ``null``, ``Null``, ``NULL``;
- integers: what Go's ``strconv.ParseInt(s, 0, 64)`` takes once underscores are removed: decimal,
  ``0x1F``, ``0o17``, ``017`` (octal), ``0b101``; then unsigned 64-bit; then floats matching
  ``[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?`` (``1e3``, ``1.``, ``.5``) and ``.inf`` / ``.nan``;
- everything else is a string: sexagesimal ``1:20``, ``001:db8::``, ``1.2.3.4``, timestamps
  (``2024-01-01`` stays a string, as go-yaml keeps it when decoding into an interface), ``0o``-less
  ``09``... (``09`` is the float 9: Go's ParseInt refuses it as octal, ParseFloat takes it).

JSON then has no NaN or infinity (sigs.k8s.io/yaml fails on them), keys are strings (a boolean or
number key becomes its text), and an integral float is an integer once the JSON is decoded again.
`resolve_plain` gives the value of one plain scalar; `PLAIN_TAG` is the tag `KubernetesResolver`
gives plain scalars, so callers can apply `resolve_plain` themselves (PyYAML's YAML 1.1 implicit
resolvers are not used).
"""

from __future__ import annotations

import math
import re
from typing import Any

from yaml.nodes import ScalarNode
from yaml.tokens import ScalarToken

PLAIN_TAG = "tag:meshgate,2026:plain"
MERGE_TAG = "tag:yaml.org,2002:merge"
INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1

_BOOLEANS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
_NULLS = frozenset(("", "~", "null", "Null", "NULL"))
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}


def _go_parse_int(text: str, *, signed: bool) -> int | None:
    """strconv.ParseInt / ParseUint with base 0 (prefixes 0x, 0o, 0b, 0), or None."""
    sign = 1
    body = text
    if body[:1] in "+-":
        if not signed:
            return None
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    base = 10
    lowered = body[:2].lower()
    if lowered in ("0x", "0o", "0b"):
        base = {"0x": 16, "0o": 8, "0b": 2}[lowered]
        body = body[2:]
    elif len(body) > 1 and body[0] == "0":
        base = 8
        body = body[1:]
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    value = sign * int(body, base)
    if signed and not INT64_MIN <= value <= INT64_MAX:
        return None
    if not signed and value > UINT64_MAX:
        return None
    return value


def resolve_plain(text: str) -> Any:
    """The JSON value of a plain scalar, as sigs.k8s.io/yaml decodes it."""
    if text in _NULLS:
        return None
    first = text[0]
    if first in "yYnNtTfFoO":
        return _BOOLEANS.get(text, text)
    if first == "~":
        return text
    if first == ".":
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        if re.fullmatch(r"\.[0-9]+([eE][-+]?[0-9]+)?", text):
            return _number(float(text))
        return text
    if first in "+-" or first.isdigit():
        if text in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[text]
        plain = text.replace("_", "")
        for signed in (True, False):
            value = _go_parse_int(plain, signed=signed)
            if value is not None:
                return value
        if _YAML_STYLE_FLOAT.match(plain):
            number = float(plain)
            if not math.isinf(number):
                return _number(number)
    return text


def _number(value: float) -> int | float:
    """JSON has one number type; Kubernetes reads an integral one back as an integer."""
    if value.is_integer() and INT64_MIN <= value <= INT64_MAX:
        return int(value)
    return value


def key_text(value: Any) -> str:
    """A mapping key as JSON text (sigs.k8s.io/yaml writes non-string keys as their text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def is_json_number(value: Any) -> bool:
    return not (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))


class KubernetesResolver:
    """A PyYAML resolver mixin: plain scalars get `PLAIN_TAG` (``<<`` stays the merge key)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit and implicit[0]:
            return MERGE_TAG if value == "<<" else PLAIN_TAG
        return super().resolve(kind, value, implicit)  # type: ignore[misc]


class GoFlowScannerMixin:
    """go-yaml's plain scalars in flow collections: a ``:`` not followed by a space does not end them.

    ``[1.2.3.4, 001:db8::]`` is a list of two strings for kubectl; LibYAML refuses the trailing
    ``::]`` ("found unexpected ':'") and PyYAML's scanner reads ``{001:db8:: null}``. Mixed into
    PyYAML's pure-Python loader, used for the texts LibYAML refuses that way.
    """

    flow_level: int

    def scan_plain(self) -> Any:
        token = super().scan_plain()  # type: ignore[misc]
        if not self.flow_level:
            return token
        value, end = token.value, token.end_mark
        while self.peek() == ":" and self.peek(1) in ",[]{}":  # type: ignore[attr-defined]
            self.forward()  # type: ignore[attr-defined]
            value += ":"
            end = self.get_mark()  # type: ignore[attr-defined]
        return ScalarToken(value, True, token.start_mark, end) if value != token.value else token


FLOW_COLON_PROBLEM = "found unexpected ':'"

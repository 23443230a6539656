"""Analysis metrics: the two built-ins, custom PromQL templates, threshold ranges.

A ``MetricDefinition`` says what to measure (a built-in kind or a PromQL template), which
direction is better, the acceptable range (``threshold``, Flagger-style) and an absolute
guard rail (``guard``) that fails a canary at once whatever the statistics say.

Templates use ``{namespace}``, ``{service}``, ``{version}`` (alias ``{subset}``),
``{canary}`` and ``{interval}``. Every placeholder but ``{interval}`` must sit inside a
double-quoted PromQL string, and its value is escaped, so a label value containing ``"``,
``}`` or ``\\`` cannot break out of the string; ``{interval}`` must be outside strings and
is checked to be a PromQL duration. Other braces (label matchers) are left alone.

``increase_query(metric, match, window=, by=)`` renders the counts the rollout gates read
(``sum by (...) (increase(metric{label="value",...}[window]))``), with the same escaping
and checked metric and label names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from integrations.prometheus import interval_seconds

SUCCESS_RATE = "request-success-rate"
LATENCY_P99 = "request-duration-p99"
PLACEHOLDERS = ("namespace", "service", "version", "subset", "canary", "interval")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Direction(StrEnum):
    HIGHER_IS_BETTER = "higher"
    LOWER_IS_BETTER = "lower"


class MetricKind(StrEnum):
    SUCCESS_RATE = "success_rate"
    LATENCY_P99 = "latency_p99"
    CUSTOM = "custom"


class TemplateError(ValueError):
    """A custom PromQL template is malformed or a value cannot be substituted safely."""


@dataclass(frozen=True)
class ThresholdRange:
    """Acceptable values: ``min <= value <= max`` (either bound optional)."""

    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"threshold min {self.min} > max {self.max}")

    def contains(self, value: float) -> bool:
        if math.isnan(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def violation(self, value: float) -> str:
        """``"< 0.99"`` / ``"> 500"`` for a value outside the range, else ``""``."""
        if self.min is not None and not value >= self.min:
            return f"< {fmt(self.min)}"
        if self.max is not None and not value <= self.max:
            return f"> {fmt(self.max)}"
        return ""

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"[{fmt(self.min)}, {fmt(self.max)}]"
        if self.min is not None:
            return f">= {fmt(self.min)}"
        if self.max is not None:
            return f"<= {fmt(self.max)}"
        return "any"


@dataclass(frozen=True)
class Target:
    """One side of the comparison: a service, by version (subset) or by canary label."""

    namespace: str
    service: str
    version: str | None = None
    canary: bool | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.canary is not None:
            raise ValueError("select by version or by canary, not both")

    def __str__(self) -> str:
        which = (
            f" {self.version}"
            if self.version is not None
            else f" canary={str(self.canary).lower()}"
            if self.canary is not None
            else ""
        )
        return f"{self.namespace}/{self.service}{which}"


@dataclass(frozen=True)
class MetricDefinition:
    name: str
    kind: MetricKind
    direction: Direction
    threshold: ThresholdRange = field(default_factory=ThresholdRange)
    guard: ThresholdRange = field(default_factory=ThresholdRange)
    query: str | None = None  # custom PromQL template (instant value of one series)
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind == MetricKind.CUSTOM:
            if not self.query:
                raise ValueError(f"custom metric {self.name!r} needs a PromQL template")
            check_template(self.query)

    def worse(self, canary: float, stable: float) -> float:
        """Relative degradation of canary vs stable (> 0 is worse, 0.5 = 50 % worse).

        For a success rate the error ratios are compared (0.5 % -> 1 % errors is 1.0).
        """
        if self.kind == MetricKind.SUCCESS_RATE:
            canary, stable = 1.0 - canary, 1.0 - stable
            return (canary - stable) / max(stable, 1e-4)
        if self.direction == Direction.HIGHER_IS_BETTER:
            return (stable - canary) / max(abs(stable), 1e-9)
        return (canary - stable) / max(abs(stable), 1e-9)


def success_rate(*, min: float = 0.99, guard_min: float | None = 0.95, name: str = SUCCESS_RATE) -> MetricDefinition:
    """Share of non-5xx answers; fails below ``min`` (threshold) or ``guard_min`` (at once)."""
    return MetricDefinition(
        name,
        MetricKind.SUCCESS_RATE,
        Direction.HIGHER_IS_BETTER,
        ThresholdRange(min=min),
        ThresholdRange(min=guard_min),
    )


def latency_p99(*, max: float = 500.0, guard_max: float | None = None, name: str = LATENCY_P99) -> MetricDefinition:
    """99th percentile request duration in ms; fails above ``max`` / ``guard_max``."""
    return MetricDefinition(
        name,
        MetricKind.LATENCY_P99,
        Direction.LOWER_IS_BETTER,
        ThresholdRange(max=max),
        ThresholdRange(max=guard_max),
        unit="ms",
    )


def custom(
    name: str,
    query: str,
    *,
    direction: Direction,
    min: float | None = None,
    max: float | None = None,
    guard_min: float | None = None,
    guard_max: float | None = None,
    unit: str = "",
) -> MetricDefinition:
    return MetricDefinition(
        name,
        MetricKind.CUSTOM,
        direction,
        ThresholdRange(min, max),
        ThresholdRange(guard_min, guard_max),
        query,
        unit,
    )


# templates -------------------------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    """The content of a double-quoted PromQL string for ``value``."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _placeholders(template: str) -> list[tuple[re.Match[str], bool]]:
    """Each placeholder with whether it sits inside a double-quoted string."""
    found, in_string, escaped, index = [], False, False, 0
    matches = {m.start(): m for m in _PLACEHOLDER.finditer(template)}
    while index < len(template):
        char = template[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        if index in matches:
            found.append((matches[index], in_string))
            index = matches[index].end()
            continue
        index += 1
    if in_string:
        raise TemplateError("unterminated string in the PromQL template")
    return found


def check_template(template: str) -> None:
    for match, quoted in _placeholders(template):
        name = match.group(1)
        if name == "interval" and quoted:
            raise TemplateError("{interval} must be outside quotes, e.g. [{interval}]")
        if name != "interval" and not quoted:
            raise TemplateError(f'{{{name}}} must be inside a quoted label value, e.g. "{{{name}}}"')


def render_template(template: str, target: Target, *, interval: str) -> str:
    """Fill a custom template for ``target``; values are escaped, ``interval`` validated."""
    check_template(template)
    try:
        interval_seconds(interval)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc
    version = target.version if target.version is not None else ""
    values = {
        "namespace": escape_label_value(target.namespace),
        "service": escape_label_value(target.service),
        "version": escape_label_value(version),
        "subset": escape_label_value(version),
        "canary": "" if target.canary is None else ("true" if target.canary else "false"),
        "interval": interval,
    }
    out, last = [], 0
    for match, _ in _placeholders(template):
        out.append(template[last : match.start()])
        out.append(values[match.group(1)])
        last = match.end()
    out.append(template[last:])
    return "".join(out)


def increase_query(metric: str, match: Mapping[str, str], *, window: str, by: Sequence[str] = ()) -> str:
    """``sum by (<by>) (increase(<metric>{<match>}[<window>]))``: label values are escaped,
    metric and label names and the window are checked (a ``TemplateError`` otherwise)."""
    if not _METRIC_NAME.match(metric):
        raise TemplateError(f"not a metric name: {metric!r}")
    for name in (*match, *by):
        if not _LABEL_NAME.match(name):
            raise TemplateError(f"not a label name: {name!r}")
    try:
        interval_seconds(window)
    except ValueError as exc:
        raise TemplateError(str(exc)) from exc
    matchers = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in match.items())
    grouping = f" by ({','.join(by)})" if by else ""
    selector = f"{metric}{{{matchers}}}" if matchers else metric
    return f"sum{grouping} (increase({selector}[{window}]))"


def fmt(value: float | None) -> str:
    """A value as a person reads it: 0.947, 512.3, 0.0004."""
    if value is None:
        return "n/a"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    short = f"{value:.4g}"
    if float(short) in (1.0, -1.0) and abs(value) != 1:  # 0.99995 is not 1
        return f"{value:.6g}"
    return short


# scoping a PromQL expression to a cluster -------------------------------------------------------

# words that are never a metric name where they stand (PromQL's keywords and modifiers)
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
     "group_left", "group_right", "atan2", "inf", "nan",
     # aggregation operators (keywords of the language: ``sum by (le) (...)``)
     "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
     "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)  # fmt: skip
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_MATCHER_NAME = re.compile(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)")


def _string_end(text: str, start: int) -> int:
    """The index after the string literal opening at ``start`` ("...", '...' or `...`)."""
    quote, index = text[start], start + 1
    while index < len(text):
        if text[index] == "\\" and quote != "`":
            index += 2
            continue
        if text[index] == quote:
            return index + 1
        index += 1
    raise TemplateError("unterminated string in the PromQL query")


def _block_end(text: str, start: int, close: str) -> int:
    """The index after the ``close`` bracket matching the one at ``start`` (strings skipped)."""
    index = start + 1
    while index < len(text):
        char = text[index]
        if char in "\"'`":
            index = _string_end(text, index)
            continue
        if char == close:
            return index + 1
        index += 1
    raise TemplateError(f"unbalanced {text[start]!r} in the PromQL query")


def _matcher_names(block: str) -> set[str]:
    """The label names a selector's ``{...}`` content matches on."""
    names, index = set(), 0
    while index < len(block):
        found = _MATCHER_NAME.match(block, index)
        if not found:
            break
        names.add(found.group(1))
        index = found.end()
        while index < len(block) and block[index] in " \t\n":
            index += 1
        if index < len(block) and block[index] in "\"'`":
            index = _string_end(block, index)
        while index < len(block) and block[index] in " \t\n,":
            index += 1
    return names


def scope_query(promql: str, scope: Mapping[str, str] | None) -> str:
    """``promql`` with every vector selector restricted to ``scope`` (e.g.
    ``{"destination_cluster": "staging"}``): ``rate(errors_total{app="a"}[5m])`` becomes
    ``rate(errors_total{destination_cluster="staging",app="a"}[5m])``, ``up`` becomes
    ``up{destination_cluster="staging"}``. The expression is tokenised as PromQL: strings,
    comments, ranges and subqueries (``[5m:1m]``), function and aggregation names, grouping label
    lists (``by (le)``, ``on (...)``) and keywords are left alone. A selector that already matches
    on a scope label keeps its own matcher (the query chose its cluster itself)."""
    if not scope:
        return promql
    for name in scope:
        if not _LABEL_NAME.match(name):
            raise TemplateError(f"not a label name: {name!r}")
    out: list[str] = []
    index, length = 0, len(promql)

    def skip_space(at: int) -> int:
        while at < length and promql[at].isspace():
            at += 1
        return at

    def inject(block: str) -> str:
        """The content of ``{...}`` with the scope's matchers it lacks in front."""
        present = _matcher_names(block)
        added = [f'{k}="{escape_label_value(v)}"' for k, v in scope.items() if k not in present]
        if not added:
            return block
        rest = block.strip()
        return ",".join(added) + ("," + block if rest else "")

    while index < length:
        char = promql[index]
        if char in "\"'`":
            end = _string_end(promql, index)
            out.append(promql[index:end])
            index = end
        elif char == "#":
            end = promql.find("\n", index)
            end = length if end < 0 else end
            out.append(promql[index:end])
            index = end
        elif char == "[":
            end = _block_end(promql, index, "]")
            out.append(promql[index:end])
            index = end
        elif char == "{":  # a selector without a metric name: {__name__=~"..."}
            end = _block_end(promql, index, "}")
            out.append("{" + inject(promql[index + 1 : end - 1]) + "}")
            index = end
        elif char.isdigit() or (char == "." and index + 1 < length and promql[index + 1].isdigit()):
            end = index + 1  # a number or a duration (1.5e3, 0x1f, 5m30s)
            while end < length and (promql[end].isalnum() or promql[end] in "._"):
                end += 1
            out.append(promql[index:end])
            index = end
        elif _IDENT.match(promql, index):
            word = _IDENT.match(promql, index).group(0)  # type: ignore[union-attr]
            end = index + len(word)
            after = skip_space(end)
            out.append(word)
            index = end
            lowered = word.lower()
            if lowered in _LABEL_LISTS:
                if after < length and promql[after] == "(":
                    close = _block_end(promql, after, ")")
                    out.append(promql[end:close])
                    index = close
            elif lowered in _KEYWORDS or (after < length and promql[after] == "("):
                pass  # a keyword, or a function / aggregation name
            elif after < length and promql[after] == "{":
                close = _block_end(promql, after, "}")
                out.append(promql[end:after] + "{" + inject(promql[after + 1 : close - 1]) + "}")
                index = close
            else:
                out.append("{" + inject("") + "}")
        else:
            out.append(char)
            index += 1
    return "".join(out)

"""CRD validation rules (``x-kubernetes-validations``) evaluated as kube-apiserver evaluates them.

One implementation for Meshgate's schema layer and for meshsim (through
``structural.validate_custom_object``), so a rule refuses the same objects in both.

Semantics follow ``k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel``:

- a rule is evaluated at each schema node that declares it, wherever the object has a value there,
  with ``self`` bound to that value (property names that are CEL keywords or hold ``-``, ``.``,
  ``/`` are escaped: ``namespace`` is ``self.__namespace__``, ``x-y`` is ``self.x__dash__y``);
- a *transition rule* (one that names ``oldSelf``) runs only on updates, where the old object holds a
  value at the same place (correlated through properties, map values and ``listType: map`` keys);
  with ``optionalOldSelf: true`` it also runs on create, ``oldSelf`` then being an empty optional;
- a failed rule gives a field error at the node (or at ``fieldPath`` under it) whose value is the
  node's type (``spec: Invalid value: "object": <message>``), typed by ``reason`` (FieldValueInvalid
  by default, FieldValueForbidden, FieldValueRequired, FieldValueDuplicate); the message is
  ``messageExpression``'s value, else ``message``, else ``failed rule: <rule>``;
- an evaluation error reads ``<error> evaluating rule: <rule>``;
- a string node with ``format: duration``, ``date-time``, ``date`` or ``byte`` is seen by the rules as
  a CEL duration, timestamp or bytes value (``celtime.py``), as kube-apiserver types it; one that does
  not parse is an evaluation error where a rule reads it.

The CEL language is celpy's (already Meshgate's guardrail engine; its ``matches()`` runs on RE2),
with the Kubernetes libraries added: Go ``duration()`` syntax, the strings extension (``substring``,
``split``, ``replace``, ``indexOf``, ``lowerAscii``, ``trim``, ``join``, ...), ``timestamp()`` with its
arithmetic and calendar accessors (``getFullYear``, ``getDayOfWeek``, ... in UTC or a time zone), the lists library
(``isSorted``, ``sum``, ``min``, ``max``, ``indexOf``), the regex library (``find``, ``findAll``),
the URL library (``url``, ``isURL``, ``getScheme``, ``getHost``, ...), the IP / CIDR library (``ip``,
``isIP``, ``cidr``, ``isCIDR``, ``family``, ``containsIP``, ...), quantities (``quantity``,
``isQuantity``, ``compareTo``, ...) and optionals for ``oldSelf``. Rules are compiled once per
process (by text).

Cost. celpy has no cost model, so the evaluator counts one unit per evaluated syntax node
(comprehension bodies count once per element, as in cel-go's runtime cost). A rule that exceeds
`PER_CALL_LIMIT` units fails with kube-apiserver's "call cost exceeds limit" error, and once an
object has spent `PER_OBJECT_BUDGET` units the remaining rules are not run and the object is refused
("running out of cost budget"). The limits are lower than Kubernetes' (1e6 and 1e7 of cel-go's
units) because a Python step is much slower than a Go one; the largest legitimate Istio objects
use a few thousand units.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from integrations.kubernetes.cellib import (
    CelError,
    CompileError,
    CostExceeded,
    Duration,
    Optional,
    compile_program,
    go_duration_nanos,
)
from integrations.kubernetes.celtime import (
    Invalid,
    decode_byte,
    parse_date,
    parse_date_time,
    parse_openapi_duration,
)
from integrations.kubernetes.fielderrors import ErrorType, FieldError

Schema = dict[str, Any]

PER_CALL_LIMIT = 1_000_000
PER_OBJECT_BUDGET = 2_000_000
MEMO_ENTRIES = 8192
PLAN_ENTRIES = 256

_REASONS = {
    "FieldValueInvalid": ErrorType.INVALID,
    "FieldValueForbidden": ErrorType.FORBIDDEN,
    "FieldValueRequired": ErrorType.REQUIRED,
    "FieldValueDuplicate": ErrorType.DUPLICATE,
}
_OLD_SELF = re.compile(r"\boldSelf\b")


def type_name(value: Any, schema: Schema) -> str:
    declared = schema.get("type")
    if declared:
        return str(declared)
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "integer" if isinstance(value, int) else "number"
    return "string"


# --- rules -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    rule: str
    message: str
    message_expression: str
    reason: str
    field_path: str
    optional_old_self: bool
    transition: bool

    @classmethod
    def from_schema(cls, raw: dict[str, Any]) -> Rule:
        text = str(raw.get("rule", ""))
        return cls(
            rule=text,
            message=str(raw.get("message") or ""),
            message_expression=str(raw.get("messageExpression") or ""),
            reason=str(raw.get("reason") or ""),
            field_path=str(raw.get("fieldPath") or ""),
            optional_old_self=bool(raw.get("optionalOldSelf")),
            transition=bool(_OLD_SELF.search(text)),
        )

    def error_string(self) -> str:
        return self.message.strip() if self.message else self.rule.strip()

    def default_message(self) -> str:
        return self.message.strip() if self.message else f"failed rule: {self.rule.strip()}"


@lru_cache(maxsize=4096)
def _rules_of(raw: str) -> tuple[Rule, ...]:
    return tuple(Rule.from_schema(item) for item in json.loads(raw) if isinstance(item, dict))


def rules_of(schema: Schema) -> tuple[Rule, ...]:
    raw = schema.get("x-kubernetes-validations")
    if not raw:
        return ()
    return _rules_of(json.dumps(raw, sort_keys=True))


class _Memo:
    """Results of non-transition rules on scalar values (many objects share `timeout: 5s`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str, Any], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str, Any]) -> tuple[Any, int] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str, str, Any], result: tuple[Any, int]) -> None:
        with self._lock:
            self._items[key] = result
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_memo = _Memo(MEMO_ENTRIES)
_MISSING = object()


# --- typed values: string formats a rule sees as CEL durations, timestamps and bytes ----------------

TYPED_FORMATS = ("duration", "date", "date-time", "byte")


def _format_of(schema: Schema) -> str:
    """The format kube-apiserver types a string node's value by ("" for a plain string)."""
    if schema.get("type") != "string" or schema.get("x-kubernetes-int-or-string"):
        return ""
    fmt = schema.get("format")
    return fmt if fmt in TYPED_FORMATS else ""


def typed_scalar(fmt: str, value: str) -> Any:
    """The CEL value of a string of format `fmt`; Invalid (an error when read) when it does not parse."""
    try:
        if fmt == "duration":
            return Duration(parse_openapi_duration(value, go_duration_nanos))
        if fmt == "date-time":
            return parse_date_time(value)
        if fmt == "date":
            return parse_date(value)
        if fmt == "byte":
            return decode_byte(value)
    except ValueError as exc:
        return Invalid(str(exc))
    return value


@dataclass
class _Typing:
    """The paths of a schema that lead to format-typed strings."""

    format: str
    properties: dict[str, _Typing]
    declared: frozenset[str]
    additional: _Typing | None
    items: _Typing | None


def _typing(schema: Schema) -> _Typing | None:
    properties: dict[str, _Typing] = {}
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict) and (child := _typing(sub)) is not None:
            properties[name] = child
    additional, items = schema.get("additionalProperties"), schema.get("items")
    additional_typing = _typing(additional) if isinstance(additional, dict) else None
    items_typing = _typing(items) if isinstance(items, dict) else None
    fmt = _format_of(schema)
    if not (fmt or properties or additional_typing or items_typing):
        return None
    declared = frozenset((schema.get("properties") or {}).keys())
    return _Typing(fmt, properties, declared, additional_typing, items_typing)


def typed(value: Any, typing: _Typing | None) -> Any:
    """`value` as a rule sees it: format-typed strings converted, everything else as it is (not copied)."""
    if typing is None:
        return value
    if typing.format and isinstance(value, str):
        return typed_scalar(typing.format, value)
    if isinstance(value, dict):
        converted = dict(value)
        for key, child in typing.properties.items():
            if key in value:
                converted[key] = typed(value[key], child)
        if typing.additional is not None:
            for key, item in value.items():
                if key not in typing.declared:
                    converted[key] = typed(item, typing.additional)
        return converted
    if isinstance(value, list) and typing.items is not None:
        return [typed(item, typing.items) for item in value]
    return value


@dataclass
class _Plan:
    """The part of a schema that holds rules: a node's own rules and the children that lead to more."""

    schema: Schema
    rules: tuple[Rule, ...]
    properties: dict[str, _Plan]
    additional: _Plan | None
    items: _Plan | None
    typing: _Typing | None = None  # where the node's value holds format-typed strings (rules only)


def _plan(schema: Schema) -> _Plan | None:
    properties: dict[str, _Plan] = {}
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict) and (child := _plan(sub)) is not None:
            properties[name] = child
    additional = schema.get("additionalProperties")
    items = schema.get("items")
    additional_plan = _plan(additional) if isinstance(additional, dict) else None
    items_plan = _plan(items) if isinstance(items, dict) else None
    rules = rules_of(schema)
    if not (rules or properties or additional_plan or items_plan):
        return None
    return _Plan(schema, rules, properties, additional_plan, items_plan, _typing(schema) if rules else None)


class _Plans:
    """Plans per root schema; an entry holds its schema, so the id it is filed under stays unique."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[Schema, _Plan | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, schema: Schema) -> _Plan | None:
        key = id(schema)
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] is schema:
                self._items.move_to_end(key)
                return found[1]
        plan = _plan(schema)
        with self._lock:
            self._items[key] = (schema, plan)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return plan


_plans = _Plans(PLAN_ENTRIES)


class RuleValidator:
    """Evaluates every rule of one object (and its old version on updates) within one cost budget."""

    def __init__(self, budget: int = PER_OBJECT_BUDGET) -> None:
        self.remaining = budget
        self.errors: list[FieldError] = []
        self.exhausted = False

    def validate(self, value: Any, plan: _Plan, path: str, old: Any = _MISSING) -> None:
        """The rules of `plan` and of every plan below it, where `value` has values."""
        schema = plan.schema
        if self.exhausted or value is None or not _type_fits(value, schema):
            return
        if plan.rules:
            bound = typed(value, plan.typing)
            old_bound = old if old is _MISSING else typed(old, plan.typing)
            for rule in plan.rules:
                if self.exhausted:
                    return
                self._rule(rule, bound, schema, path, old_bound)
        if isinstance(value, dict):
            self._object(value, plan, path, old)
        elif isinstance(value, list) and plan.items is not None:
            old_items = _correlate_list(value, schema, old)
            for index, item in enumerate(value):
                self.validate(item, plan.items, f"{path}[{index}]", old_items[index])

    def _object(self, value: dict[str, Any], plan: _Plan, path: str, old: Any) -> None:
        old_map = old if isinstance(old, dict) else {}
        declared = plan.schema.get("properties") or {}
        for key, child in plan.properties.items():
            if key in value:
                self.validate(value[key], child, f"{path}.{key}" if path else key, old_map.get(key, _MISSING))
        if plan.additional is not None:
            for key, item in value.items():
                if key not in declared:
                    self.validate(item, plan.additional, f"{path}[{key}]" if path else key, old_map.get(key, _MISSING))

    def _rule(self, rule: Rule, value: Any, schema: Schema, path: str, old: Any) -> None:
        if rule.transition and old is _MISSING and not rule.optional_old_self:
            return
        try:
            program = compile_program(rule.rule)
        except CompileError as exc:
            self.errors.append(
                FieldError(
                    ErrorType.INVALID,
                    path,
                    type_name(value, schema),
                    f"compilation failed for rule: {rule.error_string()}: {exc}",
                )
            )
            return
        if isinstance(value, Invalid):
            self.errors.append(
                FieldError(
                    ErrorType.INVALID,
                    path,
                    type_name(value, schema),
                    f"{value.message} evaluating rule: {rule.error_string()}",
                )
            )
            return
        memo_key = (
            None
            if rule.transition or not isinstance(value, (str, int, float))
            else (rule.rule, str(schema.get("format") or ""), type(value).__name__, value)
        )
        outcome = _memo.get(memo_key) if memo_key else None
        if outcome is None:
            limit = min(PER_CALL_LIMIT, self.remaining)
            try:
                outcome = program.evaluate(self._variables(rule, value, old), limit)
            except CostExceeded:
                self._over_limit(rule, value, schema, path, limit)
                return
            except CelError as exc:
                outcome = (exc, 1)
            if memo_key:
                _memo.put(memo_key, outcome)
        result, cost = outcome
        self.remaining -= cost
        if self.remaining < 0:
            self._out_of_budget(value, schema, path)
            return
        if isinstance(result, CelError):
            self.errors.append(
                FieldError(
                    ErrorType.INVALID,
                    path,
                    type_name(value, schema),
                    f"{result} evaluating rule: {rule.error_string()}",
                )
            )
        elif result is not True:
            self._failed(rule, value, schema, path, old)

    @staticmethod
    def _variables(rule: Rule, value: Any, old: Any) -> dict[str, Any]:
        variables: dict[str, Any] = {"self": value}
        if rule.transition:
            if not rule.optional_old_self:
                variables["oldSelf"] = old
            else:
                variables["oldSelf"] = Optional(True, old) if old is not _MISSING else Optional(False)
        return variables

    def _over_limit(self, rule: Rule, value: Any, schema: Schema, path: str, limit: int) -> None:
        if limit < PER_CALL_LIMIT:
            self._out_of_budget(value, schema, path)
            return
        self.remaining -= PER_CALL_LIMIT
        self.errors.append(
            FieldError(
                ErrorType.INVALID,
                path,
                type_name(value, schema),
                f"operation cancelled: actual cost limit exceeded: call cost exceeds limit for rule: "
                f"{rule.error_string()}",
            )
        )

    def _out_of_budget(self, value: Any, schema: Schema, path: str) -> None:
        self.exhausted = True
        self.remaining = 0
        self.errors.append(
            FieldError(
                ErrorType.INVALID,
                path,
                type_name(value, schema),
                "validation failed due to running out of cost budget, no further validation rules will be run",
            )
        )

    def _failed(self, rule: Rule, value: Any, schema: Schema, path: str, old: Any) -> None:
        detail = rule.default_message()
        if rule.message_expression:
            detail = self._message(rule, self._variables(rule, value, old)) or detail
        where = _with_field_path(path, rule.field_path)
        error_type = _REASONS.get(rule.reason, ErrorType.INVALID)
        self.errors.append(FieldError(error_type, where, type_name(value, schema), detail))

    def _message(self, rule: Rule, variables: dict[str, Any]) -> str:
        """messageExpression's text; "" (the static message is used) when it fails or is blank."""
        try:
            program = compile_program(rule.message_expression)
            result, cost = program.evaluate(variables, min(PER_CALL_LIMIT, max(self.remaining, 1)))
        except (CompileError, CelError, CostExceeded):
            return ""
        self.remaining -= cost
        if not isinstance(result, str) or not result.strip() or "\n" in result:
            return ""
        return result


def _type_fits(value: Any, schema: Schema) -> bool:
    expected = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    if not expected:
        return True
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer(),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }
    check = checks.get(str(expected))
    return check(value) if check else True


def _correlate_list(value: list[Any], schema: Schema, old: Any) -> list[Any]:
    """Old items matched to new ones: by key for listType map, by value for set; atomic lists don't correlate."""
    missing = [_MISSING] * len(value)
    if not isinstance(old, list):
        return missing
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []

        def identity(item: Any) -> str:
            return json.dumps({key: item.get(key) for key in keys} if isinstance(item, dict) else item, sort_keys=True)

        by_key = {identity(item): item for item in old}
        return [by_key.get(identity(item), _MISSING) for item in value]
    if list_type == "set":
        present = {json.dumps(item, sort_keys=True) for item in old}
        return [item if json.dumps(item, sort_keys=True) in present else _MISSING for item in value]
    return missing


_FIELD_PATH = re.compile(r"\.([A-Za-z_][\w-]*)|\['([^']*)'\]|\[(\d+)\]")


def _with_field_path(path: str, field_path: str) -> str:
    if not field_path:
        return path
    result = path
    for name, quoted, index in _FIELD_PATH.findall(field_path):
        if index:
            result = f"{result}[{index}]"
        else:
            key = name or quoted
            result = f"{result}.{key}" if result else key
    return result


def validate(value: Any, schema: Schema, *, old: Any = None, budget: int = PER_OBJECT_BUDGET) -> list[FieldError]:
    """The rule errors of a pruned object body against its schema (``old``: the stored object on update)."""
    return validate_with_cost(value, schema, old=old, budget=budget)[0]


def validate_with_cost(
    value: Any, schema: Schema, *, old: Any = None, budget: int = PER_OBJECT_BUDGET
) -> tuple[list[FieldError], int]:
    """The rule errors and the cost units spent (at most `budget`)."""
    plan = _plans.get(schema)
    if plan is None:
        return [], 0
    validator = RuleValidator(budget)
    validator.validate(value, plan, "", _MISSING if old is None else old)
    return validator.errors, budget - max(validator.remaining, 0)


def iter_rules(schema: Any, path: str = "") -> Iterator[tuple[str, Schema, Rule]]:
    """Every rule of a schema with the schema path where it is declared (for surveys and tests)."""
    if not isinstance(schema, dict):
        return
    for rule in rules_of(schema):
        yield path, schema, rule
    for name, sub in (schema.get("properties") or {}).items():
        yield from iter_rules(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from iter_rules(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_rules(schema["additionalProperties"], f"{path}[*]")

"""A CEL evaluator for CRD validation rules: celpy's parser, evaluation compiled to Python closures.

celpy (cel-python) parses the expression; its syntax tree is compiled once into nested closures that
evaluate directly on the JSON values of an object (no conversion to CEL value objects), which is
what makes rule evaluation cheap enough to run on every object of a bundle. Semantics are CEL's as
cel-go implements them for Kubernetes:

- errors are values that ``&&`` / ``||`` absorb when the other side decides (``false && error`` is
  false), and that ``all`` / ``exists`` absorb when an element decides;
- equality is heterogeneous (``1 == 1.0``; values of different types are unequal; ``true != 1``);
  ordering between unrelated types, integer overflow (int64), division by zero, a missing key or an
  index out of range are errors;
- integer ``/`` and ``%`` truncate toward zero; ``size()`` counts code points;
- property names escaped by Kubernetes (``__namespace__``, ``x__dash__y``, ``__dot__``,
  ``__slash__``, ``__underscores__``) are read back as the JSON keys they stand for;
- the Kubernetes libraries: Go ``duration()``, the strings extension, lists, regex (RE2), URLs,
  IP / CIDR, quantities, optionals (for ``oldSelf`` under ``optionalOldSelf``).

Cost: every evaluated node and every comprehension step costs one unit, charged to a meter that
raises `CostExceeded` past its limit (see ``cel.py`` for the limits).
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import celpy
import lark
import re2
from celpy.evaluation import celbytes, celstr

from integrations.kubernetes.celtime import Invalid, Timestamp, parse_rfc3339, zone

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
UINT_MAX = 2**64 - 1
MAX_COMPILE_DEPTH = 200


class CelError(Exception):
    """A CEL runtime error (kube-apiserver reports ``<error> evaluating rule: <rule>``)."""


class CompileError(Exception):
    pass


class CostExceeded(BaseException):
    """The meter ran over its limit; a BaseException so that no CEL error handling absorbs it."""


class Meter:
    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, units: int = 1) -> None:
        self.used += units
        if self.used > self.limit:
            raise CostExceeded


Scope = dict[str, Any]
Node = Callable[[Meter, Scope], Any]


# --- values ------------------------------------------------------------------------------------------


class Uint(int):
    """A CEL uint (a literal like 1u); plain ints are CEL ints."""


@dataclass(frozen=True, order=True)
class Duration:
    nanos: int

    def __str__(self) -> str:
        """cel-go's string(duration): the seconds in shortest decimal form, e.g. "1.5s", "3600s"."""
        seconds = format(Decimal(self.nanos).scaleb(-9).normalize(), "f")
        return f"{seconds}s"


@dataclass(frozen=True)
class URL:
    text: str
    parsed: urllib.parse.SplitResult


@dataclass(frozen=True)
class IP:
    address: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class CIDR:
    text: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    address: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Quantity:
    text: str
    amount: Decimal


@dataclass(frozen=True)
class Optional:
    present: bool
    value: Any = None


def type_of(value: Any) -> str:
    if value is None:
        return "null_type"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Uint):
        return "uint"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__.lower()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def equal(left: Any, right: Any) -> bool:
    if _number(left) and _number(right):
        return bool(left == right)
    if isinstance(left, bool) != isinstance(right, bool) or type_of(left) != type_of(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(equal(item, right[key]) for key, item in left.items())
    return bool(left == right)


def _ordered(left: Any, right: Any) -> bool:
    if _number(left) and _number(right):
        return True
    kinds = (type_of(left), type_of(right))
    if kinds[0] != kinds[1] or kinds[0] not in ("string", "bool", "bytes", "duration", "timestamp"):
        raise CelError(f"no such overload: {kinds[0]} < {kinds[1]}")
    return True


def _int_result(value: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise CelError("integer overflow")
    return value


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, bool) or isinstance(right, bool):
        raise CelError("no such overload: bool + bool")
    if isinstance(left, int) and isinstance(right, int) and not isinstance(left, float):
        return _int_result(left + right)
    if isinstance(left, float) and isinstance(right, float):
        return left + right
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    if isinstance(left, bytes) and isinstance(right, bytes):
        return left + right
    if isinstance(left, Duration) and isinstance(right, Duration):
        return Duration(_int_result(left.nanos + right.nanos))
    if isinstance(left, Timestamp) and isinstance(right, Duration):
        return _timestamp_result(left.nanos + right.nanos)
    if isinstance(left, Duration) and isinstance(right, Timestamp):
        return _timestamp_result(left.nanos + right.nanos)
    raise CelError(f"no such overload: {type_of(left)} + {type_of(right)}")


def _arith(operator: str, left: Any, right: Any) -> Any:
    if (
        not (_number(left) and _number(right))
        or type(left) is not type(right)
        and not (isinstance(left, int) and isinstance(right, int))
    ):
        if operator == "-" and isinstance(left, Duration) and isinstance(right, Duration):
            return Duration(_int_result(left.nanos - right.nanos))
        if operator == "-" and isinstance(left, Timestamp) and isinstance(right, Timestamp):
            return Duration(_int_result(left.nanos - right.nanos))
        if operator == "-" and isinstance(left, Timestamp) and isinstance(right, Duration):
            return _timestamp_result(left.nanos - right.nanos)
        raise CelError(f"no such overload: {type_of(left)} {operator} {type_of(right)}")
    if isinstance(left, float):
        if operator == "-":
            return left - right
        if operator == "*":
            return left * right
        if operator == "/":
            return left / right if right else (math.copysign(math.inf, left) if left else math.nan)
        raise CelError("no such overload: double % double")
    if operator == "-":
        return _int_result(left - right)
    if operator == "*":
        return _int_result(left * right)
    if right == 0:
        raise CelError("division by zero" if operator == "/" else "modulus by zero")
    quotient = abs(left) // abs(right) * (1 if (left >= 0) == (right >= 0) else -1)
    if operator == "/":
        return _int_result(quotient)
    return left - right * quotient


def _timestamp_result(nanos: int) -> Timestamp:
    try:
        return Timestamp(nanos)
    except ValueError:
        raise CelError("timestamp overflow") from None


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise CelError(f"no such overload: {what} applied to {type_of(value)}")
    return value


# --- compiler ----------------------------------------------------------------------------------------


_UNESCAPES = (("__underscores__", "__"), ("__dot__", "."), ("__dash__", "-"), ("__slash__", "/"))
_KEYWORD_ESCAPE = re.compile(
    r"^__(true|false|null|in|as|break|const|continue|else|for|function|if|import|let|"
    r"loop|package|namespace|return|var|void|while)__$"
)


def unescape(name: str) -> str:
    """The JSON property a CEL field name stands for (Kubernetes' property-name escaping reversed)."""
    keyword = _KEYWORD_ESCAPE.match(name)
    if keyword:
        return keyword.group(1)
    if "__" not in name:
        return name
    result = name
    for escaped, plain in _UNESCAPES:
        result = result.replace(escaped, plain)
    return result


def _select(target: Any, name: str) -> Any:
    if isinstance(target, dict):
        key = unescape(name)
        if key in target:
            return _readable(target[key])
        if name in target:
            return _readable(target[name])
        raise CelError(f"no such key: {key}")
    raise CelError(f"no such overload: field selection .{name} on {type_of(target)}")


def _readable(value: Any) -> Any:
    """A value read from an object; a format-typed field that did not parse is its error."""
    if isinstance(value, Invalid):
        raise CelError(value.message)
    return value


def _has(target: Any, name: str) -> bool:
    if isinstance(target, dict):
        return unescape(name) in target or name in target
    raise CelError(f"invalid type for field selection: {type_of(target)}")


def _index(target: Any, key: Any) -> Any:
    if isinstance(target, list):
        if not _number(key) or (isinstance(key, float) and not key.is_integer()):
            raise CelError(f"no such overload: list[{type_of(key)}]")
        position = int(key)
        if position < 0 or position >= len(target):
            raise CelError(f"index out of bounds: {position}")
        return _readable(target[position])
    if isinstance(target, dict):
        if isinstance(key, str) and key in target:
            return _readable(target[key])
        for candidate, value in target.items():
            if equal(candidate, key):
                return _readable(value)
        raise CelError(f"no such key: {key}")
    raise CelError(f"no such overload: {type_of(target)}[{type_of(key)}]")


def _contains_in(item: Any, container: Any) -> bool:
    if isinstance(container, list):
        return any(equal(item, element) for element in container)
    if isinstance(container, dict):
        return any(equal(item, key) for key in container)
    raise CelError(f"no such overload: {type_of(item)} in {type_of(container)}")


def _children(tree: lark.Tree) -> list[Any]:
    return [child for child in tree.children if child is not None]


class _Compiler:
    def __init__(self, functions: dict[str, Callable[..., Any]]) -> None:
        self.functions = functions
        self.depth = 0

    def compile(self, tree: Any) -> Node:
        self.depth += 1
        if self.depth > MAX_COMPILE_DEPTH:
            raise CompileError("the expression is nested too deeply")
        try:
            method = getattr(self, f"_{tree.data}", None)
            if method is None:
                raise CompileError(f"unsupported syntax: {tree.data}")
            return method(tree)
        finally:
            self.depth -= 1

    def _single(self, tree: lark.Tree) -> Node:
        return self.compile(_children(tree)[0])

    _member = _primary = _paren_expr = _single

    def _expr(self, tree: lark.Tree) -> Node:
        parts = _children(tree)
        if len(parts) == 1:
            return self.compile(parts[0])
        condition, when_true, when_false = (self.compile(part) for part in parts)

        def ternary(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            chosen = condition(meter, scope)
            if not isinstance(chosen, bool):
                raise CelError(f"no such overload: {type_of(chosen)} ? _ : _")
            return when_true(meter, scope) if chosen else when_false(meter, scope)

        return ternary

    def _logical(self, tree: lark.Tree, decisive: bool) -> Node:
        parts = _children(tree)
        if len(parts) == 1:
            return self.compile(parts[0])
        left, right = self.compile(parts[0]), self.compile(parts[1])
        symbol = "||" if decisive else "&&"

        def logical(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            try:
                first = _bool(left(meter, scope), symbol)
            except CelError as error:
                # The right side may still decide; when it errs too, the left side's error is the
                # result (cel-go keeps the first error of a logical operator's terms).
                try:
                    second = _bool(right(meter, scope), symbol)
                except CelError:
                    raise error from None
                if second is decisive:
                    return decisive
                raise error from None
            if first is decisive:
                return decisive
            return _bool(right(meter, scope), symbol)

        return logical

    def _conditionalor(self, tree: lark.Tree) -> Node:
        return self._logical(tree, True)

    def _conditionaland(self, tree: lark.Tree) -> Node:
        return self._logical(tree, False)

    def _relation(self, tree: lark.Tree) -> Node:
        parts = _children(tree)
        if len(parts) == 1:
            return self.compile(parts[0])
        operator_tree, right_tree = parts
        left = self.compile(_children(operator_tree)[0])
        right = self.compile(right_tree)
        operation = operator_tree.data

        def relation(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            a, b = left(meter, scope), right(meter, scope)
            if operation == "relation_eq":
                return equal(a, b)
            if operation == "relation_ne":
                return not equal(a, b)
            if operation == "relation_in":
                return _contains_in(a, b)
            _ordered(a, b)
            if operation == "relation_lt":
                return bool(a < b)
            if operation == "relation_le":
                return bool(a <= b)
            if operation == "relation_gt":
                return bool(a > b)
            return bool(a >= b)

        return relation

    def _binary(self, tree: lark.Tree) -> Node:
        parts = _children(tree)
        if len(parts) == 1:
            return self.compile(parts[0])
        operator_tree, right_tree = parts
        left = self.compile(_children(operator_tree)[0])
        right = self.compile(right_tree)
        operator = {
            "addition_add": "+",
            "addition_sub": "-",
            "multiplication_mul": "*",
            "multiplication_div": "/",
            "multiplication_mod": "%",
        }[operator_tree.data]

        def binary(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            a, b = left(meter, scope), right(meter, scope)
            return _add(a, b) if operator == "+" else _arith(operator, a, b)

        return binary

    _addition = _multiplication = _binary

    def _unary(self, tree: lark.Tree) -> Node:
        parts = _children(tree)
        if len(parts) == 1:
            return self.compile(parts[0])
        operator, operand_tree = parts
        operand = self.compile(operand_tree)
        if operator.data == "unary_not":

            def negate(meter: Meter, scope: Scope) -> Any:
                meter.charge()
                return not _bool(operand(meter, scope), "!")

            return negate

        def minus(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            value = operand(meter, scope)
            if isinstance(value, float):
                return -value
            if _number(value) and not isinstance(value, Uint):
                return _int_result(-value)
            raise CelError(f"no such overload: -{type_of(value)}")

        return minus

    def _member_dot(self, tree: lark.Tree) -> Node:
        target_tree, name_token = _children(tree)
        target = self.compile(target_tree)
        name = str(name_token)

        def select(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            return _select(target(meter, scope), name)

        return select

    def _member_index(self, tree: lark.Tree) -> Node:
        target_tree, key_tree = _children(tree)
        target, key = self.compile(target_tree), self.compile(key_tree)

        def index(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            return _index(target(meter, scope), key(meter, scope))

        return index

    def _member_object(self, tree: lark.Tree) -> Node:
        raise CompileError("message construction is not supported in CRD validation rules")

    def _args(self, tree: lark.Tree | None) -> list[Any]:
        return _children(tree) if tree is not None else []

    def _member_dot_arg(self, tree: lark.Tree) -> Node:
        parts = tree.children
        target_tree, name_token = parts[0], str(parts[1])
        arguments = self._args(parts[2] if len(parts) > 2 else None)
        if name_token in ("all", "exists", "exists_one", "filter", "map") and arguments:
            return self._macro(name_token, self.compile(target_tree), arguments)
        target = self.compile(target_tree)
        compiled = [self.compile(argument) for argument in arguments]
        function = self._function(name_token)

        def method(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            receiver = target(meter, scope)
            return function(receiver, *(argument(meter, scope) for argument in compiled))

        return method

    def _function(self, name: str) -> Callable[..., Any]:
        function = self.functions.get(name)
        if function is None:
            raise CompileError(f"undeclared reference to '{name}'")

        def call(*arguments: Any) -> Any:
            try:
                return function(*arguments)
            except CelError:
                raise
            except (TypeError, AttributeError, ValueError) as exc:
                kinds = ", ".join(type_of(argument) for argument in arguments)
                raise CelError(f"no such overload: {name}({kinds})") from exc

        return call

    def _macro(self, name: str, target: Node, arguments: list[Any]) -> Node:
        variable_tree = arguments[0]
        variable = _identifier(variable_tree)
        if variable is None or len(arguments) not in (2, 3) or (len(arguments) == 3 and name != "map"):
            raise CompileError(f"invalid arguments to the {name} macro")
        body = self.compile(arguments[1])
        transform = self.compile(arguments[2]) if len(arguments) == 3 else None

        def elements(meter: Meter, scope: Scope) -> list[Any]:
            source = target(meter, scope)
            if isinstance(source, dict):
                return list(source)
            if isinstance(source, list):
                return source
            raise CelError(f"no such overload: {type_of(source)}.{name}()")

        def step(meter: Meter, scope: Scope, item: Any, node: Node) -> Any:
            meter.charge()
            inner = dict(scope)
            inner[variable] = item
            return node(meter, inner)

        if name in ("all", "exists"):
            decisive = name == "exists"

            def quantifier(meter: Meter, scope: Scope) -> Any:
                meter.charge()
                error: CelError | None = None
                for item in elements(meter, scope):
                    try:
                        if _bool(step(meter, scope, item, body), name) is decisive:
                            return decisive
                    except CelError as exc:
                        error = error or exc
                if error is not None:
                    raise error
                return not decisive

            return quantifier
        if name == "exists_one":

            def exactly_one(meter: Meter, scope: Scope) -> Any:
                meter.charge()
                count = 0
                for item in elements(meter, scope):
                    if _bool(step(meter, scope, item, body), name):
                        count += 1
                return count == 1

            return exactly_one
        if name == "filter":

            def keep(meter: Meter, scope: Scope) -> Any:
                meter.charge()
                return [item for item in elements(meter, scope) if _bool(step(meter, scope, item, body), name)]

            return keep

        def mapped(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            result = []
            for item in elements(meter, scope):
                if transform is not None:
                    if _bool(step(meter, scope, item, body), name):
                        result.append(step(meter, scope, item, transform))
                else:
                    result.append(step(meter, scope, item, body))
            return result

        return mapped

    def _ident_arg(self, tree: lark.Tree) -> Node:
        parts = tree.children
        name = str(parts[0])
        arguments = self._args(parts[1] if len(parts) > 1 else None)
        if name == "has":
            return self._has_macro(arguments)
        if name == "dyn" and len(arguments) == 1:
            return self.compile(arguments[0])
        compiled = [self.compile(argument) for argument in arguments]
        function = self._function(name)

        def call(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            return function(*(argument(meter, scope) for argument in compiled))

        return call

    def _has_macro(self, arguments: list[Any]) -> Node:
        selection = _selection(arguments[0]) if len(arguments) == 1 else None
        if selection is None:
            raise CompileError("invalid argument to has() macro")
        target_tree, name = selection
        target = self.compile(target_tree)

        def has(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            return _has(target(meter, scope), name)

        return has

    def _dot_ident(self, tree: lark.Tree) -> Node:
        return self._ident(tree)

    def _dot_ident_arg(self, tree: lark.Tree) -> Node:
        return self._ident_arg(tree)

    def _ident(self, tree: lark.Tree) -> Node:
        name = str(_children(tree)[0])

        def variable(meter: Meter, scope: Scope) -> Any:
            meter.charge()
            try:
                return scope[name]
            except KeyError:
                raise CelError(f"undeclared reference to '{name}'") from None

        return variable

    def _list_lit(self, tree: lark.Tree) -> Node:
        items = [self.compile(item) for item in self._args(tree.children[0] if tree.children else None)]

        def build(meter: Meter, scope: Scope) -> Any:
            meter.charge(1 + len(items))
            return [item(meter, scope) for item in items]

        return build

    def _map_lit(self, tree: lark.Tree) -> Node:
        flat = [self.compile(item) for item in self._args(tree.children[0] if tree.children else None)]
        pairs = list(zip(flat[0::2], flat[1::2], strict=True))

        def build(meter: Meter, scope: Scope) -> Any:
            meter.charge(1 + len(pairs))
            result: dict[Any, Any] = {}
            for key, value in pairs:
                k = key(meter, scope)
                if not isinstance(k, (str, int, bool)):
                    raise CelError(f"unsupported key type: {type_of(k)}")
                result[k] = value(meter, scope)
            return result

        return build

    def _literal(self, tree: lark.Tree) -> Node:
        token = tree.children[0]
        if not isinstance(token, lark.Token):
            raise CompileError("unsupported literal")
        value = _literal_value(token)

        def constant(meter: Meter, scope: Scope) -> Any:
            return value

        return constant


def _literal_value(token: lark.Token) -> Any:
    kind, text = token.type, str(token)
    if kind == "INT_LIT":
        return _int_result(int(text, 0) if "x" not in text.lower() else int(text, 16))
    if kind == "UINT_LIT":
        return Uint(int(text[:-1], 0) if "x" not in text.lower() else int(text[:-1], 16))
    if kind == "FLOAT_LIT":
        return float(text)
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return str(celstr(token))
    if kind == "BYTES_LIT":
        return bytes(celbytes(token))
    if kind == "BOOL_LIT":
        return text == "true"
    return None


def _unwrap(tree: Any) -> Any:
    """The innermost node of a chain of single-child wrappers (expr → ... → member)."""
    while (
        isinstance(tree, lark.Tree)
        and len(_children(tree)) == 1
        and tree.data
        in (
            "expr",
            "conditionalor",
            "conditionaland",
            "relation",
            "addition",
            "multiplication",
            "unary",
            "member",
            "primary",
            "paren_expr",
        )
    ):
        tree = _children(tree)[0]
    return tree


def _identifier(tree: Any) -> str | None:
    node = _unwrap(tree)
    if isinstance(node, lark.Tree) and node.data == "ident":
        return str(_children(node)[0])
    return None


def _selection(tree: Any) -> tuple[Any, str] | None:
    node = _unwrap(tree)
    if isinstance(node, lark.Tree) and node.data == "member_dot":
        target, name = _children(node)
        return target, str(name)
    return None


_parser_lock_environment = celpy.Environment()


@dataclass(frozen=True)
class Program:
    text: str
    root: Node

    def evaluate(self, variables: Scope, limit: int) -> tuple[Any, int]:
        """(value, cost); raises CelError on a runtime error and CostExceeded past `limit`."""
        meter = Meter(limit)
        try:
            return self.root(meter, variables), meter.used
        except RecursionError:
            raise CelError("the expression is nested too deeply") from None


@lru_cache(maxsize=2048)
def compile_program(text: str) -> Program:
    """Parse and compile once per process; raises CompileError."""
    try:
        tree = _parser_lock_environment.compile(text)
    except celpy.CELParseError as exc:
        raise CompileError(str(exc).splitlines()[0] if str(exc) else "syntax error") from None
    except RecursionError:
        raise CompileError("the expression is nested too deeply") from None
    return Program(text, _Compiler(LIBRARY).compile(tree))


# --- the Kubernetes CEL libraries -------------------------------------------------------------------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an int")
    return value


_GO_DURATION_PART = re.compile(r"([0-9]*)(\.[0-9]*)?([a-zµμ]+)")
_GO_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}


def go_duration_nanos(text: str) -> int:
    """Go's time.ParseDuration: "300ms", "-1.5h", "2h45m"; a bare "0" is allowed."""
    invalid = CelError(f'time: invalid duration "{text}"')
    body = text[1:] if text[:1] in "+-" else text
    negative = text.startswith("-")
    if body == "0":
        return 0
    if not body:
        raise invalid
    total = Decimal(0)
    position = 0
    for part in _GO_DURATION_PART.finditer(body):
        if part.start() != position:
            raise invalid
        position = part.end()
        whole, fraction, unit = part.group(1), part.group(2) or "", part.group(3)
        if not whole and len(fraction) <= 1:
            raise invalid
        if unit not in _GO_UNITS_NS:
            raise CelError(f'time: unknown unit "{unit}" in duration "{text}"')
        total += Decimal((whole or "0") + (fraction if len(fraction) > 1 else "")) * _GO_UNITS_NS[unit]
    if position != len(body):
        raise invalid
    nanos = int(total)
    if nanos > INT_MAX + (1 if negative else 0):
        raise invalid
    return -nanos if negative else nanos


def _duration(value: Any) -> Duration:
    if isinstance(value, Duration):
        return value
    return Duration(go_duration_nanos(_string(value)))


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, dict)):
        return len(value)
    raise TypeError("no size")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("bool")
    if isinstance(value, Duration):
        return value.nanos
    if isinstance(value, Timestamp):
        return value.seconds
    if isinstance(value, float):
        if math.isnan(value) or not INT_MIN <= value <= INT_MAX:
            raise CelError("double out of int64 range")
        return int(value)
    if isinstance(value, str):
        try:
            return _int_result(int(value, 10))
        except ValueError:
            raise CelError(f"cannot convert string {value!r} to int") from None
    return _int_result(int(_integer(value)))


def _to_uint(value: Any) -> Uint:
    number = _to_int(value) if not isinstance(value, str) else int(value, 10)
    if not 0 <= number <= UINT_MAX:
        raise CelError("uint out of range")
    return Uint(number)


def _to_double(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("bool")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise CelError(f"cannot convert string {value!r} to double") from None
    if _number(value):
        return float(value)
    raise TypeError("not a number")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Uint):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Duration | Timestamp):
        return str(value)
    if isinstance(value, IP):
        return str(value.address)
    if isinstance(value, CIDR):
        return value.text
    if isinstance(value, URL):
        return value.text
    if isinstance(value, Quantity):
        return value.text
    raise TypeError("no string conversion")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _string(value)
    if text in ("true", "True", "TRUE", "t", "1"):
        return True
    if text in ("false", "False", "FALSE", "f", "0"):
        return False
    raise CelError(f"type conversion error from 'string' to 'bool': {text!r}")


def _contains(text: Any, part: Any) -> bool:
    return _string(part) in _string(text)


def _starts_with(text: Any, prefix: Any) -> bool:
    return _string(text).startswith(_string(prefix))


def _ends_with(text: Any, suffix: Any) -> bool:
    return _string(text).endswith(_string(suffix))


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        raise CelError(f"invalid regular expression {pattern!r}: {exc}") from None


def _matches(text: Any, pattern: Any) -> bool:
    return _regex(_string(pattern)).search(_string(text)) is not None


def _find(text: Any, pattern: Any) -> str:
    found = _regex(_string(pattern)).search(_string(text))
    return found.group(0) if found else ""


def _find_all(text: Any, pattern: Any, limit: Any = -1) -> list[str]:
    found = [match.group(0) for match in _regex(_string(pattern)).finditer(_string(text))]
    count = _integer(limit)
    return found if count < 0 else found[:count]


def _char_at(text: Any, index: Any) -> str:
    value, position = _string(text), _integer(index)
    if position < 0 or position > len(value):
        raise CelError(f"index out of range: {position}")
    return value[position : position + 1]


def _index_of(container: Any, item: Any, offset: Any = 0) -> int:
    if isinstance(container, list):
        return next((position for position, element in enumerate(container) if equal(element, item)), -1)
    value, start = _string(container), _integer(offset)
    if start < 0 or start > len(value):
        raise CelError(f"index out of range: {start}")
    return value.find(_string(item), start)


def _last_index_of(container: Any, item: Any, offset: Any = None) -> int:
    if isinstance(container, list):
        return next(
            (position for position in range(len(container) - 1, -1, -1) if equal(container[position], item)), -1
        )
    value, needle = _string(container), _string(item)
    end = len(value) if offset is None else _integer(offset)
    if end < 0 or end > len(value):
        raise CelError(f"index out of range: {end}")
    return value.rfind(needle, 0, end + len(needle))


def _substring(text: Any, start: Any, end: Any = None) -> str:
    value = _string(text)
    first = _integer(start)
    last = len(value) if end is None else _integer(end)
    if first < 0 or first > len(value):
        raise CelError(f"index out of range: {first}")
    if last < first or last > len(value):
        raise CelError(f"index out of range: {last}")
    return value[first:last]


def _split(text: Any, separator: Any, limit: Any = -1) -> list[str]:
    value, sep, count = _string(text), _string(separator), _integer(limit)
    if count == 0:
        return []
    if sep == "":
        parts = list(value)
        return parts if count < 0 or count >= len(parts) else [*parts[: count - 1], "".join(parts[count - 1 :])]
    return value.split(sep) if count < 0 else value.split(sep, count - 1)


def _replace(text: Any, old: Any, new: Any, count: Any = -1) -> str:
    return _string(text).replace(_string(old), _string(new), _integer(count))


def _ascii(upper: bool) -> Callable[[Any], str]:
    def convert(text: Any) -> str:
        return "".join((c.upper() if upper else c.lower()) if c.isascii() else c for c in _string(text))

    return convert


def _trim(text: Any) -> str:
    return _string(text).strip()


def _join(items: Any, separator: Any = "") -> str:
    if not isinstance(items, list):
        raise TypeError("not a list")
    return _string(separator).join(_string(item) for item in items)


def _reverse(value: Any) -> Any:
    if isinstance(value, list):
        return list(reversed(value))
    return _string(value)[::-1]


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("not a list")
    return value


def _is_sorted(items: Any) -> bool:
    values = _list(items)
    for a, b in itertools.pairwise(values):
        _ordered(a, b)
        if a > b:
            return False
    return True


def _sum(items: Any) -> Any:
    values = _list(items)
    total: Any = 0
    for position, item in enumerate(values):
        total = item if position == 0 else _add(total, item)
    return total


def _extreme(largest: bool) -> Callable[..., Any]:
    def pick(*arguments: Any) -> Any:
        values = _list(arguments[0]) if len(arguments) == 1 and isinstance(arguments[0], list) else list(arguments)
        if not values:
            raise CelError(f"{'max' if largest else 'min'} called on empty list")
        best = values[0]
        for item in values[1:]:
            _ordered(best, item)
            if (item > best) if largest else (item < best):
                best = item
        return best

    return pick


# URLs: Go's url.ParseRequestURI (an absolute URI, or an absolute path).
def parse_request_uri(text: str) -> urllib.parse.SplitResult | None:
    if not text or any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        return None
    if not text.startswith("/") and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:", text):
        return None
    try:
        parsed = urllib.parse.urlsplit(text, allow_fragments=False)
        _ = parsed.port
    except ValueError:
        return None
    if parsed.scheme and not parsed.netloc and not parsed.path.startswith("/") and parsed.path == "":
        return None
    return parsed


def _is_url(text: Any) -> bool:
    return parse_request_uri(_string(text)) is not None


def _url(text: Any) -> URL:
    value = _string(text)
    parsed = parse_request_uri(value)
    if parsed is None:
        raise CelError(f"URL parse error during conversion from string: {value}")
    return URL(value, parsed)


def _url_value(value: Any) -> urllib.parse.SplitResult:
    if not isinstance(value, URL):
        raise TypeError("not a URL")
    return value.parsed


def _get_scheme(value: Any) -> str:
    return _url_value(value).scheme


def _get_host(value: Any) -> str:
    return _url_value(value).netloc.rpartition("@")[2]


def _get_hostname(value: Any) -> str:
    host = _get_host(value)
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if ":" in host else host


def _get_port(value: Any) -> str:
    host = _get_host(value)
    tail = host.rpartition("]")[2]
    return tail.rpartition(":")[2] if ":" in tail else ""


def _get_escaped_path(value: Any) -> str:
    return _url_value(value).path


def _get_query(value: Any) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(_url_value(value).query, keep_blank_values=True)


# IP addresses and CIDRs (k8s.io/apiserver/pkg/cel/library): no zones, no IPv4-mapped IPv6, no leading zeros.
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None
    return address


def parse_cidr(text: str) -> CIDR | None:
    address_text, slash, prefix = text.partition("/")
    address = parse_ip(address_text)
    if not slash or address is None or not prefix.isdigit() or (len(prefix) > 1 and prefix.startswith("0")):
        return None
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return CIDR(text, network, address)


def _ip(value: Any) -> IP:
    if isinstance(value, CIDR):
        return IP(value.address)
    text = _string(value)
    address = parse_ip(text)
    if address is None:
        raise CelError(f"IP Address {text!r} parse error during conversion from string")
    return IP(address)


def _cidr(value: Any) -> CIDR:
    text = _string(value)
    parsed = parse_cidr(text)
    if parsed is None:
        raise CelError(f"network address {text!r} parse error during conversion from string")
    return parsed


def _is_ip(text: Any) -> bool:
    return parse_ip(_string(text)) is not None


def _is_cidr(text: Any) -> bool:
    return parse_cidr(_string(text)) is not None


def _address(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(value, IP):
        return value.address
    raise TypeError("not an IP")


def _family(value: Any) -> int:
    return _address(value).version


def _ip_flag(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        address = _address(value)
        if name == "isUnspecified":
            return address.is_unspecified
        if name == "isLoopback":
            return address.is_loopback
        if name == "isLinkLocalMulticast":
            return (
                address.is_multicast
                and address.is_link_local
                or (isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("224.0.0.0/24"))
            )
        if name == "isLinkLocalUnicast":
            return address.is_link_local and not address.is_multicast
        return not (
            address.is_multicast
            or address.is_loopback
            or address.is_link_local
            or address.is_unspecified
            or address == ipaddress.ip_address("255.255.255.255")
        )

    return check


def _contains_ip(network: Any, address: Any) -> bool:
    if not isinstance(network, CIDR):
        raise TypeError("not a CIDR")
    candidate = address.address if isinstance(address, IP) else _ip(address).address
    return candidate.version == network.network.version and candidate in network.network


def _contains_cidr(network: Any, other: Any) -> bool:
    if not isinstance(network, CIDR):
        raise TypeError("not a CIDR")
    inner = other if isinstance(other, CIDR) else _cidr(other)
    return inner.network.version == network.network.version and inner.network.subnet_of(network.network)  # type: ignore[arg-type]


def _prefix_length(network: Any) -> int:
    if not isinstance(network, CIDR):
        raise TypeError("not a CIDR")
    return network.network.prefixlen


def _masked(network: Any) -> CIDR:
    if not isinstance(network, CIDR):
        raise TypeError("not a CIDR")
    text = str(network.network)
    return CIDR(text, network.network, network.network.network_address)


# Quantities (k8s.io/apimachinery resource.Quantity), compared by value.
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


def parse_quantity(text: str) -> Quantity | None:
    found = _QUANTITY.match(text)
    if not found:
        return None
    try:
        number = Decimal(found.group(1))
    except InvalidOperation:
        return None
    suffix = found.group(2) or ""
    scale = Decimal(10) ** int(suffix[1:]) if suffix[:1] in ("e", "E") else _SUFFIXES[suffix]
    return Quantity(text, number * scale)


def _quantity(text: Any) -> Quantity:
    value = _string(text)
    parsed = parse_quantity(value)
    if parsed is None:
        raise CelError("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    return parsed


def _is_quantity(text: Any) -> bool:
    return parse_quantity(_string(text)) is not None


def _amount(value: Any) -> Decimal:
    if isinstance(value, Quantity):
        return value.amount
    raise TypeError("not a quantity")


def _compare_to(left: Any, right: Any) -> int:
    a, b = _amount(left), _amount(right)
    return (a > b) - (a < b)


def _quantity_add(left: Any, right: Any) -> Quantity:
    total = _amount(left) + (_amount(right) if isinstance(right, Quantity) else Decimal(_integer(right)))
    return Quantity(str(total), total)


def _quantity_sub(left: Any, right: Any) -> Quantity:
    total = _amount(left) - (_amount(right) if isinstance(right, Quantity) else Decimal(_integer(right)))
    return Quantity(str(total), total)


def _as_integer(value: Any) -> int:
    amount = _amount(value)
    if amount != amount.to_integral_value() or not INT_MIN <= amount <= INT_MAX:
        raise CelError("cannot convert value to integer")
    return int(amount)


def _as_approximate_float(value: Any) -> float:
    return float(_amount(value))


def _is_integer(value: Any) -> bool:
    amount = _amount(value)
    return amount == amount.to_integral_value() and INT_MIN <= amount <= INT_MAX


def _sign(value: Any) -> int:
    amount = _amount(value)
    return (amount > 0) - (amount < 0)


# Optionals (oldSelf under optionalOldSelf).
def _optional(value: Any) -> Optional:
    if not isinstance(value, Optional):
        raise TypeError("not an optional")
    return value


def _has_value(value: Any) -> bool:
    return _optional(value).present


def _optional_value(value: Any) -> Any:
    optional = _optional(value)
    if not optional.present:
        raise CelError("optional.none() dereference")
    return optional.value


def _or_value(value: Any, default: Any) -> Any:
    optional = _optional(value)
    return optional.value if optional.present else default


def _timestamp(value: Any) -> Timestamp:
    """timestamp(): an RFC 3339 string, a timestamp, or Unix seconds (int)."""
    if isinstance(value, Timestamp):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return _timestamp_result(value * 10**9)
    try:
        return parse_rfc3339(_string(value))
    except ValueError as exc:
        raise CelError(f"timestamp conversion error: {exc}") from None


def _zone_of(arguments: tuple[Any, ...]) -> Any:
    if len(arguments) > 1:
        raise TypeError("too many arguments")
    try:
        return zone(_string(arguments[0])) if arguments else UTC
    except ValueError as exc:
        raise CelError(str(exc)) from None


_CALENDAR: dict[str, Callable[[Any], int]] = {
    "getFullYear": lambda moment: moment.year,
    "getMonth": lambda moment: moment.month - 1,  # 0-11
    "getDate": lambda moment: moment.day,  # 1-31
    "getDayOfMonth": lambda moment: moment.day - 1,  # 0-30
    "getDayOfWeek": lambda moment: (moment.weekday() + 1) % 7,  # 0 = Sunday
    "getDayOfYear": lambda moment: moment.timetuple().tm_yday - 1,  # 0-365
    "getHours": lambda moment: moment.hour,
    "getMinutes": lambda moment: moment.minute,
    "getSeconds": lambda moment: moment.second,
}


def _time_part(name: str, divisor: int | None = None) -> Callable[..., int]:
    """A duration's whole hours / minutes / seconds / milliseconds (`divisor` nanoseconds), or a
    timestamp's calendar field in UTC or the time zone given."""

    def part(value: Any, *arguments: Any) -> int:
        if isinstance(value, Duration) and divisor is not None and not arguments:
            return int(value.nanos / divisor)
        if not isinstance(value, Timestamp):
            raise TypeError("not a timestamp")
        where = _zone_of(arguments)
        if name == "getMilliseconds":
            return (value.nanos % 10**9) // 10**6
        return _CALENDAR[name](value.in_zone(where))

    return part


def _type(value: Any) -> str:
    return type_of(value)


LIBRARY: dict[str, Callable[..., Any]] = {
    # standard
    "size": _size,
    "int": _to_int,
    "uint": _to_uint,
    "double": _to_double,
    "string": _to_string,
    "bool": _to_bool,
    "type": _type,
    "duration": _duration,
    "contains": _contains,
    "startsWith": _starts_with,
    "endsWith": _ends_with,
    "matches": _matches,
    "timestamp": _timestamp,
    "getHours": _time_part("getHours", 3600 * 10**9),
    "getMinutes": _time_part("getMinutes", 60 * 10**9),
    "getSeconds": _time_part("getSeconds", 10**9),
    "getMilliseconds": _time_part("getMilliseconds", 10**6),
    "getFullYear": _time_part("getFullYear"),
    "getMonth": _time_part("getMonth"),
    "getDate": _time_part("getDate"),
    "getDayOfMonth": _time_part("getDayOfMonth"),
    "getDayOfWeek": _time_part("getDayOfWeek"),
    "getDayOfYear": _time_part("getDayOfYear"),
    # strings extension
    "charAt": _char_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": _ascii(False),
    "upperAscii": _ascii(True),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": _trim,
    "join": _join,
    "reverse": _reverse,
    # lists
    "isSorted": _is_sorted,
    "sum": _sum,
    "min": _extreme(False),
    "max": _extreme(True),
    # regex
    "find": _find,
    "findAll": _find_all,
    # URLs
    "isURL": _is_url,
    "url": _url,
    "getScheme": _get_scheme,
    "getHost": _get_host,
    "getHostname": _get_hostname,
    "getPort": _get_port,
    "getEscapedPath": _get_escaped_path,
    "getQuery": _get_query,
    # IP addresses and CIDRs
    "isIP": _is_ip,
    "ip": _ip,
    "isCIDR": _is_cidr,
    "cidr": _cidr,
    "family": _family,
    "isUnspecified": _ip_flag("isUnspecified"),
    "isLoopback": _ip_flag("isLoopback"),
    "isLinkLocalMulticast": _ip_flag("isLinkLocalMulticast"),
    "isLinkLocalUnicast": _ip_flag("isLinkLocalUnicast"),
    "isGlobalUnicast": _ip_flag("isGlobalUnicast"),
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "prefixLength": _prefix_length,
    "masked": _masked,
    # quantities
    "quantity": _quantity,
    "isQuantity": _is_quantity,
    "compareTo": _compare_to,
    "isLessThan": lambda left, right: _compare_to(left, right) < 0,
    "isGreaterThan": lambda left, right: _compare_to(left, right) > 0,
    "add": _quantity_add,
    "sub": _quantity_sub,
    "asInteger": _as_integer,
    "asApproximateFloat": _as_approximate_float,
    "isInteger": _is_integer,
    "sign": _sign,
    # optionals
    "hasValue": _has_value,
    "value": _optional_value,
    "orValue": _or_value,
}

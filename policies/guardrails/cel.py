"""CEL (the Common Expression Language, as Kubernetes ValidatingAdmissionPolicy uses it) via celpy.

An expression sees `object` (the Istio object as a map), `environment` ({name, production}) and
`params` (the guardrail's parameters) and must return a bool: true = passes.

Sandboxing. celpy is a pure-Python interpreter over its own AST: an expression can only call CEL's
standard functions (no attribute access on Python objects, no I/O, no imports), and regular
expressions run on RE2 (linear time). celpy has no cost limit, so three bounds stand in for the
cost budget Kubernetes uses:

1. the expression text is at most `limits.MAX_EXPRESSION_LENGTH` characters (checked before parsing);
2. evaluation runs under a wall-clock budget (`limits.EVALUATION_BUDGET_SECONDS`): a trace function
   installed with `sys.settrace` for the evaluating thread only, for the duration of the call, checks
   the deadline on every Python function call inside celpy and raises `_BudgetExceeded` (a
   BaseException, so celpy's own `except Exception` handlers cannot swallow it). This works in any
   thread (unlike SIGALRM) and in Celery's daemonic workers (unlike a subprocess). Tracing makes
   evaluation about 2-3x slower, which is negligible for real guardrails (well under a millisecond
   on one object) and is counted inside the budget; a debugger's or coverage's tracer is restored
   afterwards;
3. nesting is bounded by the recursion limit (RecursionError becomes an evaluation error).

Any failure of an expression (parse error, type error, missing field, budget exceeded, non-bool
result) is a `CelEvaluationError`, which the engine reports as the guardrail result "error".
"""

from __future__ import annotations

import functools
import sys
import time
from types import FrameType
from typing import Any

import celpy
from celpy import celtypes

from policies.guardrails import limits


class CelCompileError(Exception):
    """The expression cannot be compiled; `message` names the line and column."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


class CelEvaluationError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class _BudgetExceeded(BaseException):
    """Raised inside celpy by the trace function; a BaseException so that no handler catches it."""


def _parse_error(expression: str, exc: celpy.CELParseError) -> CelCompileError:
    line, column = getattr(exc, "line", None), getattr(exc, "column", None)
    if line is None:
        return CelCompileError(f"invalid CEL: {str(exc).splitlines()[0] if str(exc) else 'syntax error'}")
    source = expression.splitlines()[line - 1] if 0 < line <= len(expression.splitlines()) else ""
    near = source[column - 1 : column + 19].strip() if column else ""
    where = f"line {line}, column {column}"
    detail = f"unexpected {near!r}" if near else "unexpected end of the expression"
    return CelCompileError(f"invalid CEL at {where}: {detail}", line=line, column=column)


@functools.lru_cache(maxsize=limits.COMPILED_CACHE_SIZE)
def _program(expression: str) -> celpy.Runner:
    environment = celpy.Environment()
    try:
        ast = environment.compile(expression)
    except celpy.CELParseError as exc:
        raise _parse_error(expression, exc) from None
    except RecursionError:
        raise CelCompileError("invalid CEL: the expression is nested too deeply") from None
    try:
        return environment.program(ast)
    except Exception as exc:  # noqa: BLE001 - celpy reports unsupported constructs as plain errors
        raise CelCompileError(f"invalid CEL: {exc}") from None


def cel_compile(expression: str) -> celpy.Runner:
    """The compiled program (cached per expression), or CelCompileError naming the position."""
    if not expression or not expression.strip():
        raise CelCompileError("the expression is empty")
    if len(expression) > limits.MAX_EXPRESSION_LENGTH:
        raise CelCompileError(
            f"the expression is {len(expression)} characters long, more than the {limits.MAX_EXPRESSION_LENGTH} allowed"
        )
    return _program(expression)


def to_cel(value: Any) -> Any:
    """A JSON-like Python value as CEL values."""
    return celpy.json_to_cel(value)


def _run_with_budget(program: celpy.Runner, activation: dict[str, Any], budget: float) -> Any:
    deadline = time.monotonic() + budget
    expired = False

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:  # the sys.settrace signature
        nonlocal expired
        if expired or time.monotonic() > deadline:
            expired = True
            raise _BudgetExceeded
        return None  # no per-line tracing: only calls are checked

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        result = program.evaluate(activation)
    except _BudgetExceeded:
        raise
    except Exception:
        # celpy turns some errors inside a macro into error values and goes on: the stop then
        # surfaces as another error (a missing overload), which is still the budget's doing
        if expired:
            raise _BudgetExceeded from None
        raise
    finally:
        sys.settrace(previous)
    if expired:
        raise _BudgetExceeded
    return result


def cel_evaluate(
    expression: str, *, variables: dict[str, Any], budget_seconds: float = limits.EVALUATION_BUDGET_SECONDS
) -> bool:
    """Evaluates the expression over `variables` (plain JSON-like values). True = passes."""
    try:
        program = cel_compile(expression)
    except CelCompileError as exc:
        raise CelEvaluationError(exc.message) from None
    try:
        activation = {name: to_cel(value) for name, value in variables.items()}
    except Exception as exc:  # noqa: BLE001 - e.g. a value type JSON does not have
        raise CelEvaluationError(f"the object cannot be given to CEL: {exc}") from None
    try:
        result = _run_with_budget(program, activation, budget_seconds)
    except _BudgetExceeded:
        raise CelEvaluationError(
            f"the expression took longer than {budget_seconds:g}s on this object and was stopped"
        ) from None
    except RecursionError:
        raise CelEvaluationError("the expression recursed too deeply") from None
    except celpy.CELEvalError as exc:
        raise CelEvaluationError(_eval_message(exc)) from None
    except Exception as exc:  # noqa: BLE001 - celpy raises plain Python errors for some type mismatches
        raise CelEvaluationError(f"evaluation failed: {type(exc).__name__}: {exc}") from None
    if isinstance(result, celpy.CELEvalError):
        raise CelEvaluationError(_eval_message(result))
    if not isinstance(result, celtypes.BoolType):
        raise CelEvaluationError(f"the expression returned {_type_name(result)}, not a bool (true = passes)")
    return bool(result)


def _eval_message(exc: celpy.CELEvalError) -> str:
    text = exc.args[0] if exc.args else str(exc)
    return f"evaluation failed: {text}"


def _type_name(value: Any) -> str:
    names = {
        celtypes.IntType: "an int",
        celtypes.UintType: "a uint",
        celtypes.DoubleType: "a double",
        celtypes.StringType: "a string",
        celtypes.ListType: "a list",
        celtypes.MapType: "a map",
        celtypes.BytesType: "bytes",
    }
    for cls, name in names.items():
        if isinstance(value, cls):
            return name
    return "null" if value is None else type(value).__name__

import pytest

from policies.guardrails import limits
from policies.guardrails.cel import CelCompileError, CelEvaluationError, cel_compile, cel_evaluate

VS = {
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "bookinfo"},
    "spec": {"hosts": ["reviews"], "http": [{"timeout": "5s", "route": [{"destination": {"host": "reviews"}}]}]},
}
ENV = {"name": "prod", "production": True}


def run(expression, obj=VS, **kwargs):
    return cel_evaluate(expression, variables={"object": obj, "environment": ENV, "params": {"limit": 3}}, **kwargs)


def test_expressions_see_object_environment_and_params():
    assert run('object.kind != "VirtualService" || object.spec.http.all(r, has(r.timeout))') is True
    assert run('object.spec.hosts.exists(h, h == "*")') is False
    assert run("environment.production && environment.name == 'prod'") is True
    assert run("size(object.spec.http) <= params.limit") is True
    assert run('object.metadata.name.matches("^rev")') is True


@pytest.mark.parametrize(
    ("expression", "line", "column"),
    [
        ("object.kind ==", 1, 13),
        ("1 +* 2", 1, 4),
        ('object.kind == "VirtualService" &&\n  object.spec.hosts.all(h, h != "*"))', 2, 37),
    ],
)
def test_compile_errors_name_the_position(expression, line, column):
    with pytest.raises(CelCompileError) as caught:
        cel_compile(expression)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert f"line {line}, column {column}" in caught.value.message


def test_too_long_and_empty_expressions_are_refused():
    with pytest.raises(CelCompileError, match="more than"):
        cel_compile("true && " * (limits.MAX_EXPRESSION_LENGTH // 8 + 1) + "true")
    with pytest.raises(CelCompileError, match="empty"):
        cel_compile("   ")


def test_a_missing_field_is_an_evaluation_error():
    with pytest.raises(CelEvaluationError, match="no such member"):
        run("object.spec.gateways.size() > 0")


def test_a_non_bool_result_is_an_error():
    with pytest.raises(CelEvaluationError, match="returned an int, not a bool"):
        run("size(object.spec.http)")


def test_runaway_expressions_are_stopped_by_the_time_budget():
    numbers = "[" + ",".join(str(i) for i in range(60)) + "]"
    expression = f"{numbers}.all(a, {numbers}.all(b, {numbers}.all(c, a + b + c >= 0)))"
    assert len(expression) < limits.MAX_EXPRESSION_LENGTH
    with pytest.raises(CelEvaluationError, match="longer than 0.2s"):
        run(expression, budget_seconds=0.2)


def test_the_budget_leaves_an_existing_tracer_in_place():
    import sys

    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        assert run("true") is True
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)

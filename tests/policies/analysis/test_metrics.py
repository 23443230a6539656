"""Metric definitions, threshold ranges and custom PromQL template substitution."""

from __future__ import annotations

import pytest

from policies.analysis.metrics import (
    Direction,
    Target,
    TemplateError,
    ThresholdRange,
    custom,
    fmt,
    latency_p99,
    render_template,
    success_rate,
)

TEMPLATE = (
    'sum(rate(http_errors_total{namespace="{namespace}",service="{service}",'
    'version="{version}",canary="{canary}"}[{interval}]))'
)


def test_threshold_ranges() -> None:
    both = ThresholdRange(min=0.5, max=2)
    assert both.contains(0.5) and both.contains(2) and not both.contains(2.1)
    assert both.violation(0.4) == "< 0.5" and both.violation(3) == "> 2"
    assert both.violation(1) == "" and str(both) == "[0.5, 2]"
    assert not both.contains(float("nan"))
    assert ThresholdRange().contains(1e9) and str(ThresholdRange(max=500)) == "<= 500"
    with pytest.raises(ValueError):
        ThresholdRange(min=2, max=1)


def test_builtins_and_direction() -> None:
    sr, p99 = success_rate(min=0.99), latency_p99(max=500)
    assert sr.direction == Direction.HIGHER_IS_BETTER and sr.threshold.min == 0.99
    assert p99.direction == Direction.LOWER_IS_BETTER and p99.threshold.max == 500
    assert sr.worse(0.99, 0.995) == pytest.approx(1.0)  # 0.5 % -> 1 % errors: +100 %
    assert p99.worse(150, 100) == pytest.approx(0.5)
    assert p99.worse(80, 100) < 0


def test_render_substitutes_every_variable() -> None:
    target = Target("shop", "catalog", version="v2")
    promql = render_template(TEMPLATE, target, interval="1m")
    assert promql == ('sum(rate(http_errors_total{namespace="shop",service="catalog",version="v2",canary=""}[1m]))')
    by_canary = render_template(
        'x{c="{canary}",s="{subset}"}[{interval}]', Target("a", "b", canary=True), interval="30s"
    )
    assert by_canary == 'x{c="true",s=""}[30s]'


@pytest.mark.parametrize(
    "evil",
    ['v2"} or vector(1) or x{a="', "v2}", 'v2\\"}', "v2\n}", "v2\\"],
)
def test_label_values_cannot_break_out_of_the_string(evil: str) -> None:
    promql = render_template(TEMPLATE, Target("shop", "catalog", version=evil), interval="1m")
    # the rest of the query is intact: exactly one selector, closed where the template closes
    assert promql.endswith('",canary=""}[1m]))')
    # walk the string literal: it ends exactly where the template's quote ends
    start = promql.index('version="') + len('version="')
    index, escaped = start, False
    while True:
        char = promql[index]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            break
        index += 1
    assert promql[index:] == '",canary=""}[1m]))'
    assert "\n" not in promql


def test_unsafe_templates_are_refused() -> None:
    target = Target("shop", "catalog", version="v1")
    with pytest.raises(TemplateError, match="inside a quoted"):
        render_template("x{service={service}}", target, interval="1m")
    with pytest.raises(TemplateError, match="outside quotes"):
        render_template('x{a="{interval}"}', target, interval="1m")
    with pytest.raises(TemplateError, match="PromQL duration"):
        render_template("rate(x[{interval}])", target, interval="1m] or vector(1) #")
    with pytest.raises(TemplateError, match="unterminated"):
        render_template('x{a="{service}}', target, interval="1m")
    with pytest.raises(TemplateError):
        custom("bad", "x{a={namespace}}", direction=Direction.LOWER_IS_BETTER)


def test_fmt() -> None:
    assert fmt(0.947) == "0.947" and fmt(0.9995) == "0.9995" and fmt(512.34) == "512.3"
    assert fmt(None) == "n/a" and fmt(0) == "0" and fmt(0.0004) == "0.0004"

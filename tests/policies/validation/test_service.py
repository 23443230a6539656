"""The report as callers use it: ordering, per-document findings, levels, and the code catalogue."""

import json
import re

from policies.validation import Level, validate_bundle
from policies.validation.checks import REGISTRY
from policies.validation.codes import CATALOGUE
from tests.policies.validation.helpers import codes, only

GOOD = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: NAME, namespace: shop}
spec:
  host: NAME
  subsets:
  - {name: v1, labels: {version: v1}}
"""
UNKNOWN_FIELD = GOOD.replace("  host: NAME", "  host: NAME\n  hots: x")
BAD_SUBSET = GOOD.replace("version: v1}", "version: v9}")


def doc(name: str, template: str = GOOD) -> str:
    return template.replace("NAME", name)


def test_findings_are_sorted_by_file_in_bundle_order_then_document_then_line(staging):
    files = [
        ("z.yaml", "---\n".join([doc("frontend"), doc("cart", BAD_SUBSET), doc("checkout", UNKNOWN_FIELD)]).encode()),
        ("a.yaml", (doc("catalog", BAD_SUBSET) + "---\n" + "kind: [").encode()),
    ]
    report = validate_bundle(environment=staging, files=files)
    located = [(f.file, f.document, f.line, f.code) for f in report.findings]
    assert located == [
        ("z.yaml", 1, 15, "MG0403"),
        ("z.yaml", 2, 22, "MG0203"),
        ("a.yaml", 0, 7, "MG0403"),
        ("a.yaml", 1, 10, "MG0004"),
    ]
    assert [f.object for f in report.findings][:3] == [
        "DestinationRule shop/cart",
        "DestinationRule shop/checkout",
        "DestinationRule shop/catalog",
    ]


def test_each_document_gets_its_own_findings_list_items_included(staging):
    listed = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: a, namespace: bookinfo},"
        " spec: {host: reviews}}\n"
        "- {apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: b, namespace: bookinfo},"
        " spec: {host: reviewz}}\n"
    )
    report = validate_bundle(environment=staging, files=[("list.yaml", listed.encode())])
    first, second = report.documents
    assert [f.code for f in report.for_document(first)] == ["MG0404"]
    assert sorted(f.code for f in report.for_document(second)) == ["MG0401"]


def test_warnings_and_infos_do_not_block(validate):
    report = validate(doc("cart", BAD_SUBSET))
    assert only(report, "MG0403").level == Level.WARNING
    assert not report.has_errors
    assert report.counts() == {"error": 0, "warning": 1, "info": 0}
    assert validate(doc("cart", UNKNOWN_FIELD)).has_errors


def test_findings_serialize_to_json(validate):
    report = validate(doc("cart", UNKNOWN_FIELD))
    data = json.loads(json.dumps([f.as_dict() for f in report.findings]))
    assert data == [
        {
            "code": "MG0203",
            "level": "error",
            "layer": "schema",
            "file": "",
            "document": 0,
            "line": 6,
            "column": 3,
            "path": "spec.hots",
            "object": "DestinationRule shop/cart",
            "message": "unknown field spec.hots: did you mean host?",
            "istio_code": "",
        }
    ]


def test_a_field_the_schema_rejects_is_not_reported_again_by_a_cross_resource_check(validate):
    gateway = (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: bookinfo}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [edge.example.com]\n"
        "    tls: {credentialName: CREDENTIAL}\n"
    )
    assert "MG0503" in codes(validate(gateway.replace("CREDENTIAL", "edge-tls")))
    report = validate(gateway.replace("CREDENTIAL", "5"))
    assert codes(report) == ["MG0201"]


def test_every_code_is_catalogued_with_a_title_an_explanation_and_a_fix():
    for code, entry in CATALOGUE.items():
        assert re.fullmatch(r"MG\d{4}", code) and entry.code == code
        assert entry.title and entry.explanation.endswith(".") and entry.fix.endswith("."), code
    assert {check.code for check in REGISTRY} <= set(CATALOGUE)

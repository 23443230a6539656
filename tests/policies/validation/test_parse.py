"""Layer 1: every kind of bad input becomes a clear finding at the right place; good input is read."""

import json
import textwrap

import pytest

from policies.validation import Level, parse_bundle
from policies.validation.limits import MAX_BUNDLE_BYTES, MAX_DEPTH, MAX_DOCUMENTS

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
"""


def parse(text: str, name: str = "policy.yaml", **options):
    return parse_bundle([(name, textwrap.dedent(text).encode())], **options)


def codes_of(findings) -> list[str]:
    return [finding.code for finding in findings]


def test_a_valid_object_is_read_with_its_identity_and_no_finding():
    documents, findings = parse(VS)
    assert findings == []
    [doc] = documents
    assert (doc.kind, doc.namespace, doc.name, doc.label) == (
        "VirtualService",
        "bookinfo",
        "reviews",
        "VirtualService bookinfo/reviews",
    )
    assert doc.obj["spec"]["http"][0]["route"][1]["weight"] == 10


def test_field_paths_map_to_their_lines_and_missing_fields_to_their_nearest_ancestor():
    [doc], _ = parse(VS)
    assert doc.line_of("spec.http[0].route[1].weight") == 18
    assert doc.line_of("spec.http[0].route[1].destination.subset") == 17
    assert doc.line_of("spec.hosts[0]") == 8
    assert doc.line_of("spec.http[0].route[1].destination.port.number") == 15, "falls back to destination"
    assert doc.line_of("spec.tcp[3]") == 6, "falls back to spec"
    assert doc.at("spec.http[0].route[1].weight") == {
        "file": "policy.yaml",
        "document": 0,
        "line": 18,
        "column": 7,
        "path": "spec.http[0].route[1].weight",
        "object": "VirtualService bookinfo/reviews",
    }


def test_lines_count_from_the_start_of_the_file_in_later_documents():
    documents, findings = parse(VS + "---\n" + VS.replace("name: reviews", "name: reviews-2"))
    assert findings == []
    assert [doc.index for doc in documents] == [0, 1]
    assert documents[1].start_line == 20
    assert documents[1].line_of("spec.http[0].route[1].weight") == 18 + 19


def test_invalid_yaml_is_reported_with_line_and_column_and_earlier_documents_are_kept():
    text = VS + "---\n" + "apiVersion: v1\nkind: [VirtualService\nmetadata: {}\n"
    documents, findings = parse(text)
    assert [doc.name for doc in documents] == ["reviews"]
    [error] = findings
    assert (error.code, error.level, error.layer, error.document) == ("MG0004", Level.ERROR, "parse", 1)
    assert (error.line, error.column) == (22, 9)
    assert error.message.startswith("YAML/JSON syntax error at line 22, column 9: did not find expected ',' or ']'")
    assert "while parsing a flow sequence from line 21, column 7" in error.message


def test_a_tab_in_the_indentation_is_named_as_such():
    _, [error] = parse("apiVersion: v1\nkind: VirtualService\nmetadata:\n\tname: x\n")
    assert (error.code, error.line, error.column) == ("MG0005", 4, 1)
    assert "tab" in error.message and "spaces" in error.message


def test_a_tab_inside_a_value_is_accepted():
    annotated = VS.replace("namespace: bookinfo", 'namespace: bookinfo\n  annotations: {note: "a\tb"}')
    documents, findings = parse(annotated)
    assert findings == []
    assert documents[0].metadata["annotations"]["note"] == "a\tb"


def test_duplicate_keys_are_refused_at_the_second_one():
    _, findings = parse(VS.replace("      weight: 10", "      weight: 10\n      weight: 20"))
    [error] = findings
    assert (error.code, error.line, error.path) == ("MG0006", 19, "spec.http[0].route[1].weight")
    assert "first at line 18" in error.message


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_a_billion_laughs_document_is_refused():
    documents, findings = parse(BILLION_LAUGHS)
    assert documents == []
    [error] = findings
    assert error.code == "MG0007"
    assert "aliases" in error.message and "100,000" in error.message


def test_a_few_aliases_are_fine():
    text = VS.replace("  hosts:\n  - reviews", "  hosts: &hosts\n  - reviews\n  exportTo: *hosts")
    documents, findings = parse(text)
    assert findings == []
    assert documents[0].obj["spec"]["exportTo"] == ["reviews"]


def test_merge_keys_fill_in_keys_not_set_explicitly():
    text = """\
    base: &base {host: reviews, subset: v1}
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: r, namespace: bookinfo}
    spec:
      <<: *base
      subset: v2
    """
    [doc], findings = parse(text)
    assert findings == []
    assert doc.obj["spec"] == {"host": "reviews", "subset": "v2"}


def test_a_recursive_alias_is_refused():
    _, [error] = parse("a: &a [1, *a]\n")
    assert error.code == "MG0007" and "recursive" in error.message


def test_nesting_deeper_than_any_istio_object_is_refused():
    text = "spec: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    _, [error] = parse(text)
    assert error.code == "MG0008"


def test_a_bundle_over_the_size_limit_is_refused_before_it_is_read():
    # Invalid UTF-8 at the start: had it been decoded, the finding would be MG0003.
    body = b"\xff" + b"a" * (2 * MAX_BUNDLE_BYTES)
    documents, findings = parse_bundle([("huge.yaml", body)])
    assert documents == []
    [error] = findings
    assert (error.code, error.file) == ("MG0001", "huge.yaml")
    assert "20.0 MiB" in error.message


def test_the_size_limit_applies_to_the_bundle_as_a_whole():
    half = VS.encode() + b"#" * (MAX_BUNDLE_BYTES // 2 + 1)
    _, [error] = parse_bundle([("a.yaml", half), ("b.yaml", half)])
    assert (error.code, error.file) == ("MG0001", "")


def test_a_document_over_one_mib_is_refused():
    big = VS + "  exportTo: [" + ",".join(['"' + "x" * 60 + '"'] * 20_000) + "]\n"
    _, findings = parse(big)
    assert codes_of(findings) == ["MG0010"]


def test_binary_data_is_refused():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    documents, [error] = parse_bundle([("logo.png", png)])
    assert documents == []
    assert (error.code, error.file) == ("MG0002", "logo.png")


def test_text_that_is_not_utf8_is_refused_with_its_byte_offset():
    body = VS.replace("namespace: bookinfo", "namespace: bookinfo # caf\u00e9").encode("latin-1")
    _, [error] = parse_bundle([("latin1.yaml", body)])
    offset = body.index(b"\xe9")
    assert (error.code, error.line) == ("MG0003", 5)
    assert f"byte offset {offset}" in error.message and "UTF-8" in error.message


def test_utf16_is_refused_but_a_utf8_byte_order_mark_is_accepted():
    _, [error] = parse_bundle([("w.yaml", VS.encode("utf-16"))])
    assert error.code == "MG0003" and "UTF-16" in error.message
    documents, findings = parse_bundle([("bom.yaml", b"\xef\xbb\xbf" + VS.encode())])
    assert findings == [] and documents[0].name == "reviews"


def test_control_characters_are_refused_with_their_line():
    _, [error] = parse(VS.replace("name: reviews", "name: rev\x07iews"))
    assert (error.code, error.line) == ("MG0004", 4)


def test_a_file_of_countless_documents_is_cut_short():
    documents, findings = parse("---\n" * (MAX_DOCUMENTS * 4))
    assert documents == [] and codes_of(findings) == ["MG0013"]


def test_an_empty_bundle_has_nothing_to_validate():
    _, [error] = parse("# just a comment\n---\n")
    assert error.code == "MG0012"


def test_a_document_that_is_not_an_object_is_refused():
    _, findings = parse("just a string\n---\n- 1\n- 2\n")
    assert codes_of(findings) == ["MG0009", "MG0009", "MG0009"]


def test_yaml_tags_without_json_equivalent_are_refused():
    _, [error] = parse(VS.replace("subset: v1", "subset: !!binary djE="))
    assert (error.code, error.path) == ("MG0011", "spec.http[0].route[0].destination.subset")


def test_a_json_object_and_a_json_list_of_objects_are_read():
    obj = {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "shop"},
        "spec": {"mtls": {"mode": "STRICT"}},
    }
    other = {**obj, "metadata": {"name": "other", "namespace": "shop"}}
    [single], findings = parse_bundle([("pa.json", json.dumps(obj, indent="\t").encode())])
    assert findings == [] and single.obj == obj
    listed, findings = parse_bundle([("pas.json", json.dumps([obj, other], indent=2).encode())])
    assert findings == []
    assert [(doc.name, doc.index, doc.item) for doc in listed] == [("default", 0, 0), ("other", 0, 1)]
    assert listed[1].line_of("spec.mtls.mode") == 24


def test_a_kubernetes_list_is_read_item_by_item():
    text = """\
    apiVersion: v1
    kind: List
    items:
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {name: reviews, namespace: bookinfo}
      spec: {host: reviews}
    - apiVersion: networking.istio.io/v1
      kind: DestinationRule
      metadata: {name: ratings, namespace: bookinfo}
      spec:
        host: ratings
    """
    documents, findings = parse(text)
    assert findings == []
    assert [(doc.name, doc.item, doc.start_line) for doc in documents] == [("reviews", 0, 4), ("ratings", 1, 8)]
    assert documents[1].line_of("spec.host") == 12


def test_numbers_are_read_as_kubectl_reads_them():
    [doc], _ = parse(VS.replace("weight: 90", "weight: 9e1").replace("subset: v2", 'subset: "2e1"'))
    route = doc.obj["spec"]["http"][0]["route"]
    assert (route[0]["weight"], route[1]["destination"]["subset"]) == (90, "2e1")


class TestIdentity:
    def test_an_unsupported_kind_gets_one_clear_finding(self):
        [doc], [error] = parse(VS.replace("VirtualService", "HTTPRoute"))
        assert (error.code, error.path, error.line) == ("MG0102", "kind", 2)
        assert "HTTPRoute" in error.message and not doc.checkable

    @pytest.mark.parametrize(
        ("api_version", "kind"),
        [
            ("networking.istio.io/v1alpha3", "EnvoyFilter"),
            ("networking.istio.io/v1beta1", "ProxyConfig"),
            ("networking.istio.io/v1beta1", "WorkloadEntry"),
            ("networking.istio.io/v1alpha3", "WorkloadGroup"),
            ("telemetry.istio.io/v1", "Telemetry"),
            ("telemetry.istio.io/v1alpha1", "Telemetry"),
            ("extensions.istio.io/v1alpha1", "WasmPlugin"),
            ("extensions.istio.io/v1alpha1", "TrafficExtension"),
            ("networking.istio.io/v1alpha3", "VirtualService"),
            ("security.istio.io/v1beta1", "AuthorizationPolicy"),
        ],
    )
    def test_every_istio_kind_is_accepted_in_every_served_version(self, api_version, kind):
        text = VS.replace("networking.istio.io/v1", api_version).replace("VirtualService", kind)
        [doc], findings = parse(text)
        assert findings == [] and doc.checkable and doc.kind == kind

    def test_a_misspelt_kind_gets_a_suggestion(self):
        _, [error] = parse(VS.replace("kind: VirtualService", "kind: virtualservice"))
        assert error.code == "MG0102" and "did you mean VirtualService?" in error.message

    def test_missing_api_version_or_kind(self):
        _, [error] = parse(VS.replace("apiVersion: networking.istio.io/v1\n", ""))
        assert error.code == "MG0101" and "apiVersion" in error.message

    @pytest.mark.parametrize(
        ("api_version", "expected"),
        [
            ("security.istio.io/v1", "use networking.istio.io/v1"),
            ("networking.istio.io/version1", "is not a Kubernetes API version"),
        ],
    )
    def test_an_api_version_that_does_not_fit_the_kind(self, api_version, expected):
        _, [error] = parse(VS.replace("networking.istio.io/v1", api_version))
        assert (error.code, error.path, error.line) == ("MG0103", "apiVersion", 1)
        assert expected in error.message

    @pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
    def test_every_served_version_is_accepted(self, version):
        _, findings = parse(VS.replace("networking.istio.io/v1", f"networking.istio.io/{version}"))
        assert findings == []

    def test_a_missing_name(self):
        [doc], [error] = parse(VS.replace("  name: reviews\n", ""))
        assert (error.code, error.line) == ("MG0104", 3) and not doc.checkable

    @pytest.mark.parametrize("name", ["Reviews", "reviews_v2", "-reviews", "a" * 254])
    def test_an_invalid_name(self, name):
        _, [error] = parse(VS.replace("name: reviews", f"name: {name}"))
        assert (error.code, error.path, error.line) == ("MG0104", "metadata.name", 4)

    def test_a_missing_namespace_without_a_default(self):
        [doc], [error] = parse(VS.replace("  namespace: bookinfo\n", ""))
        assert error.code == "MG0105" and not doc.checkable

    def test_a_missing_namespace_takes_the_default(self):
        [doc], findings = parse(VS.replace("  namespace: bookinfo\n", ""), default_namespace="shop")
        assert findings == [] and doc.namespace == "shop"

    def test_an_invalid_namespace(self):
        _, [error] = parse(VS.replace("namespace: bookinfo", "namespace: Book.Info"))
        assert (error.code, error.line) == ("MG0105", 5)

    def test_the_same_object_twice_in_a_bundle(self):
        documents, findings = parse_bundle([("a.yaml", VS.encode()), ("b.yaml", VS.encode())])
        [error] = findings
        assert (error.code, error.file, error.line) == ("MG0106", "b.yaml", 4)
        assert "a.yaml line 1" in error.message
        assert [doc.checkable for doc in documents] == [True, False]

    def test_the_same_name_in_another_namespace_or_kind_is_another_object(self):
        other_namespace = VS.replace("namespace: bookinfo", "namespace: shop")
        other_kind = (
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n"
            "  namespace: bookinfo\nspec:\n  host: reviews\n"
        )
        _, findings = parse(VS + "---\n" + other_namespace + "---\n" + other_kind)
        assert findings == []

"""Plain YAML scalars read as Kubernetes reads them (sigs.k8s.io/yaml, go-yaml v2 rules), not as YAML 1.1."""

import textwrap

import pytest

from integrations.meshsim.yamlio import load_document
from policies.validation import validate_text
from policies.validation.parse import parse_file
from tests.factories import EnvironmentFactory

SCALARS = [
    ("1.2.3.4", "1.2.3.4"),
    ("1:20", "1:20"),  # YAML 1.1 sexagesimal (80): a string for Kubernetes
    ("190:20:30", "190:20:30"),
    ("2001:db8::1", "2001:db8::1"),
    ("2024-01-01", "2024-01-01"),
    ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
    ("0o17", 15),
    ("017", 15),
    ("0x1F", 31),
    ("0b101", 5),
    ("1_000", 1000),
    ("09", 9),
    ("1e3", 1000),
    ("1.5", 1.5),
    (".5", 0.5),
    ("-0", 0),
    ("+12", 12),
    ("yes", True),
    ("On", True),
    ("y", True),
    ("no", False),
    ("OFF", False),
    ("true", True),
    ("tRue", "tRue"),
    ("~", None),
    ("null", None),
    ("0.0.0.0/0", "0.0.0.0/0"),
    ("v1", "v1"),
    ("1Gi", "1Gi"),
    ("5s", "5s"),
    ("18446744073709551615", 18446744073709551615),
    ("1e400", "1e400"),
    ('"1:20"', "1:20"),
    ("'yes'", "yes"),
]


@pytest.mark.parametrize(("text", "expected"), SCALARS, ids=[text for text, _ in SCALARS])
def test_scalars_as_kubernetes_reads_them(text, expected):
    documents, findings = parse_file("x.yaml", f"value: {text}\n".encode())
    assert findings == []
    assert documents[0].obj["value"] == expected
    assert type(documents[0].obj["value"]) is type(expected)
    assert load_document(f"value: {text}\n") == {"value": expected}  # meshsim reads the same


def test_flow_list_with_ipv6_addresses():
    text = "addresses: [1.2.3.4, 001:db8::, 'fe80::1']\n"
    documents, findings = parse_file("x.yaml", text.encode())
    assert findings == []
    assert documents[0].obj["addresses"] == ["1.2.3.4", "001:db8::", "fe80::1"]
    assert documents[0].line_of("addresses[1]") == 1
    assert load_document(text) == {"addresses": ["1.2.3.4", "001:db8::", "fe80::1"]}


def test_keys_are_strings_and_merge_keys_work():
    documents, findings = parse_file("x.yaml", b"base: &b {a: 1}\nyes: 1\n80: http\n<<: *b\n")
    assert findings == []
    assert documents[0].obj == {"base": {"a": 1}, "true": 1, "80": "http", "a": 1}


def test_infinity_has_no_json_equivalent():
    documents, findings = parse_file("x.yaml", b"value: .inf\n")
    assert [f.code for f in findings] == ["MG0011"]


def test_serviceentry_with_ipv6_addresses_validates(db, meshsim):
    environment = EnvironmentFactory(name="staging", api_url=meshsim.url)
    report = validate_text(
        environment=environment,
        text=textwrap.dedent("""\
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: external-svc, namespace: bookinfo}
        spec:
          hosts: [external.example.com]
          addresses: [1.2.3.4, 001:db8::]
          ports: [{number: 443, name: https, protocol: TLS}]
          resolution: STATIC
          endpoints: [{address: 1.2.3.4}]
        """),
    )
    assert [f.message for f in report.findings if f.level == "error"] == []
    assert report.documents[0].obj["spec"]["addresses"] == ["1.2.3.4", "001:db8::"]

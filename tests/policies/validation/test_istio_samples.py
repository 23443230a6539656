"""Acceptance: the Istio project's own bookinfo networking samples and security task examples
validate with no errors, through every layer but the server dry-run, against the demo mesh
(the bookinfo namespace), as the Istio tasks apply them (routing samples after
destination-rule-all.yaml, which defines the subsets they use)."""

from pathlib import Path

import pytest

from policies.validation.service import validate_bundle

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "reference" / "istio" / "samples" / "valid"
BOOKINFO_AND_SECURITY = sorted(
    path
    for path in SAMPLES.glob("*.yaml")
    if path.name.startswith(
        ("virtual-service-", "destination-rule-", "bookinfo-gateway", "fault-injection-", "authz-", "authn-policy-")
    )
)
NEEDS_SUBSETS = ("virtual-service-",)


def test_the_samples_are_there():
    assert len(BOOKINFO_AND_SECURITY) >= 35


@pytest.mark.parametrize("sample", BOOKINFO_AND_SECURITY, ids=lambda path: path.name)
def test_istio_sample_validates_without_errors(staging, sample):
    files = [(sample.name, sample.read_bytes())]
    if sample.name.startswith(NEEDS_SUBSETS):
        files.append(("destination-rule-all.yaml", (SAMPLES / "destination-rule-all.yaml").read_bytes()))
    report = validate_bundle(environment=staging, files=files, default_namespace="bookinfo")
    assert report.documents, "the sample was read"
    errors = [f"{f.code} {f.path}: {f.message}" for f in report.findings if f.level == "error"]
    assert errors == []

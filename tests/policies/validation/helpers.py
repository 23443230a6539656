"""Shared by the validation tests."""

from pathlib import Path

from policies.validation import Finding, ValidationReport

REPO_ROOT = Path(__file__).resolve().parents[3]
ISTIO_REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "istio"
CRD_FILE = ISTIO_REFERENCE / "crd-all.gen.yaml"


def codes(report: ValidationReport, layer: str | None = None) -> list[str]:
    return [finding.code for finding in report.findings if layer is None or finding.layer == layer]


def only(report: ValidationReport, code: str) -> Finding:
    """The single finding with `code`; fails listing all findings otherwise."""
    found = [finding for finding in report.findings if finding.code == code]
    assert len(found) == 1, [f.as_dict() for f in report.findings]
    return found[0]

"""The validation engine for authoring: parse, schema, cross-resource checks and server dry-run.

Entry points: `validate_bundle` / `validate_text` (service.py). The finding codes, with their
explanation and fix, are catalogued in codes.py.
"""

from policies.validation.findings import Finding, Layer, Level
from policies.validation.parse import ParsedDocument, parse_bundle
from policies.validation.service import ValidationReport, validate_bundle, validate_text

__all__ = [
    "Finding",
    "Layer",
    "Level",
    "ParsedDocument",
    "ValidationReport",
    "parse_bundle",
    "validate_bundle",
    "validate_text",
]

"""Limits of what the validation engine accepts, so that no input can make it slow or large."""

KIB = 1024
MIB = 1024 * KIB

MAX_BUNDLE_BYTES = 10 * MIB
"""All files of one bundle together (a single file is limited by this too)."""

MAX_DOCUMENT_BYTES = 1 * MIB
"""One YAML document (or one JSON value) inside a file."""

MAX_DOCUMENTS = 5000
"""YAML documents and list items in one bundle."""

MAX_NODES_PER_DOCUMENT = 100_000
"""Values (mappings, lists, scalars) one document may expand to, counting every alias expansion."""

MAX_DEPTH = 100
"""Nesting of mappings and lists; Istio objects need about 15."""

BINARY_SNIFF_BYTES = 8 * KIB
"""How much of a file is looked at to tell text from binary data."""

BINARY_CONTROL_RATIO = 0.10
"""A file whose first bytes hold more control characters than this is binary."""

BUNDLE_RULE_BUDGET = 5_000_000
"""Cost units the CRD validation rules (CEL) of one bundle may spend together (one object may spend
`integrations.kubernetes.cel.PER_OBJECT_BUDGET`); past it, objects are refused as out of budget. A
1,000-object bundle of ordinary Istio objects spends about 30,000."""

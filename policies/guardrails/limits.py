"""Limits that keep an admin-authored CEL expression from making evaluation slow or large."""

MAX_EXPRESSION_LENGTH = 4000
"""Characters of one CEL expression. CEL has no loops, so with a bounded text and a bounded object
(the parser caps documents at 1 MiB) the work is bounded too; the time budget catches the rest."""

EVALUATION_BUDGET_SECONDS = 0.25
"""Wall-clock time one expression may take on one object before it is stopped as an error."""

MAX_MESSAGE_DETAILS = 10
"""Violations of one built-in listed in a message; the rest are counted."""

MAX_TEST_MANIFEST_BYTES = 256 * 1024
"""Size of a manifest pasted into the guardrail test box."""

MAX_TEST_OBJECTS = 50
"""Objects of one pasted manifest that the test box evaluates."""

COMPILED_CACHE_SIZE = 256
"""Compiled CEL programs kept per process."""

"""Guardrails: org-wide checks on policy content (built-in Python checks and admin-authored CEL).

`engine.guardrails_evaluate` runs the enabled guardrails against objects; `engine.blocking_results`
says which results block an approval. The rows live in `policies.models.Guardrail`.
"""

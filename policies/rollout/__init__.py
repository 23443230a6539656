"""The rollout engine's building blocks: strategies (phases), analysis interface, webhooks (its choices are in `policies.choices`).

Services that change state are in `policies.services.rollouts`."""

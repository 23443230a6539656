"""The rollout engine's building blocks: choices, strategies (phases), analysis interface.

Services that change state are in `policies.services.rollouts`."""

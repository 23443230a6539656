"""The rollout engine's building blocks: strategies (phases), analysis interface, webhooks (its choices are in `policies.choices`).

The step machine is `policies.rollout.engine`; the use cases people and the reconciler call are in
`policies.services.rollouts`."""

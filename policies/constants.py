# Metadata the API server owns; never part of a revision's content.
SERVER_MANAGED_METADATA = (
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "ownerReferences",
    "finalizers",
)
SERVER_MANAGED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
GENESIS_HASH = "0" * 64
CATALOG_PAGE_SIZE = 50

# Limits of a change's rollout options (policies.services.rollout_options): (lowest, highest).
ROLLOUT_OPTION_INT_LIMITS = {
    "interval_seconds": (5, 86_400),
    "intervals_per_step": (1, 100),
    "failure_limit": (1, 100),
    "no_data_limit": (1, 100),
    "inconclusive_limit": (1, 1_000),
    "webhook_attempts": (1, 100),
    "warmup_intervals": (0, 100),
    "both_bad_limit": (1, 1_000),
    "accumulate_limit": (1, 10_000),
    "judge_power_wait_intervals": (0, 1_000),
}
ROLLOUT_OPTION_NUMBER_LIMITS = {
    "meshsim_advance_seconds": (0, 3_600),
    "max_shadow_denials": (0, 1_000_000_000),
    "max_forbidden_rate": (0, 1),
    "max_plaintext_requests": (0, 1_000_000_000),
    "max_refused_plaintext": (0, 1_000_000_000),
    "judge_alpha": (1e-9, 0.5),
    "min_requests": (1, 1_000_000_000),
    "judge_power_ratio": (1.01, 100),
}
ROLLOUT_OPTION_WINDOW_SECONDS = (10, 86_400)
ROLLOUT_OPTION_MAX_STEPS = 20
ROLLOUT_OPTION_MAX_METRICS = 10
ROLLOUT_OPTION_MAX_QUERY = 2_000
ROLLOUT_OPTION_MAX_LATENCY_MS = 3_600_000

# the analysis a rollout runs when its change sets none (`ChangeRequest.rollout_options`)
DEFAULT_ANALYSIS = {"interval_seconds": 60, "intervals_per_step": 1, "failure_limit": 1, "metrics": []}

# A per-environment promotion override is a small patch: at most this many bytes as compact JSON.
PROMOTION_OVERRIDE_MAX_BYTES = 16 * 1024

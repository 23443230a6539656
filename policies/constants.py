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

"""A thin, typed adapter over the official `kubernetes` client for the Istio kinds Meshgate manages."""
from integrations.kubernetes.client import (
    ClusterConfig,
    apply_object,
    delete_object,
    get_object,
    list_namespaces,
    list_objects,
    list_pods,
    list_services,
    patch_object_json,
    read_crd_schema,
    server_version,
)
from integrations.kubernetes.exceptions import (
    AlreadyExists,
    Conflict,
    Invalid,
    KubernetesError,
    NotFound,
    Unauthorized,
    Unreachable,
)
from integrations.kubernetes.kinds import KINDS, IstioKind, kind_info

__all__ = [
    "KINDS",
    "AlreadyExists",
    "ClusterConfig",
    "Conflict",
    "Invalid",
    "IstioKind",
    "KubernetesError",
    "NotFound",
    "Unauthorized",
    "Unreachable",
    "apply_object",
    "delete_object",
    "get_object",
    "kind_info",
    "list_namespaces",
    "patch_object_json",
    "list_objects",
    "list_pods",
    "list_services",
    "read_crd_schema",
    "server_version",
]

"""The kinds Meshgate reads and writes, with their API group, served versions and REST plural.

`KINDS` are the Istio kinds Meshgate governs: every kind of the Istio CRD file, in each version
the CRD serves (`versions`, the preferred one first: Meshgate reads and writes in that one).
`CONTEXT_KINDS` are read only, as context for the cross-resource checks: the Kubernetes Gateway
API objects an Istio object may refer to.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class IstioKind:
    kind: str
    group: str
    versions: tuple[str, ...]
    plural: str

    @property
    def version(self) -> str:
        """The preferred version: what Meshgate reads and writes."""
        return self.versions[0]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{version}" for version in self.versions)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
EXTENSIONS = "extensions.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
_NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_SECURITY_VERSIONS = ("v1", "v1beta1")

KINDS: dict[str, IstioKind] = {
    k.kind: k
    for k in (
        IstioKind("VirtualService", NETWORKING, _NETWORKING_VERSIONS, "virtualservices"),
        IstioKind("DestinationRule", NETWORKING, _NETWORKING_VERSIONS, "destinationrules"),
        IstioKind("Gateway", NETWORKING, _NETWORKING_VERSIONS, "gateways"),
        IstioKind("ServiceEntry", NETWORKING, _NETWORKING_VERSIONS, "serviceentries"),
        IstioKind("Sidecar", NETWORKING, _NETWORKING_VERSIONS, "sidecars"),
        IstioKind("WorkloadEntry", NETWORKING, _NETWORKING_VERSIONS, "workloadentries"),
        IstioKind("WorkloadGroup", NETWORKING, _NETWORKING_VERSIONS, "workloadgroups"),
        IstioKind("EnvoyFilter", NETWORKING, ("v1alpha3",), "envoyfilters"),
        IstioKind("ProxyConfig", NETWORKING, ("v1beta1",), "proxyconfigs"),
        IstioKind("AuthorizationPolicy", SECURITY, _SECURITY_VERSIONS, "authorizationpolicies"),
        IstioKind("PeerAuthentication", SECURITY, _SECURITY_VERSIONS, "peerauthentications"),
        IstioKind("RequestAuthentication", SECURITY, _SECURITY_VERSIONS, "requestauthentications"),
        IstioKind("Telemetry", TELEMETRY, ("v1", "v1alpha1"), "telemetries"),
        IstioKind("WasmPlugin", EXTENSIONS, ("v1alpha1",), "wasmplugins"),
        IstioKind("TrafficExtension", EXTENSIONS, ("v1alpha1",), "trafficextensions"),
    )
}

# Read as context only (never written). Keyed by kind: `Gateway` here is gateway.networking.k8s.io's.
CONTEXT_KINDS: dict[str, IstioKind] = {
    k.kind: k
    for k in (
        IstioKind("Gateway", GATEWAY_API, ("v1", "v1beta1"), "gateways"),
        IstioKind("HTTPRoute", GATEWAY_API, ("v1", "v1beta1"), "httproutes"),
        IstioKind("GRPCRoute", GATEWAY_API, ("v1",), "grpcroutes"),
        IstioKind("ReferenceGrant", GATEWAY_API, ("v1beta1", "v1"), "referencegrants"),
    )
}


def kind_info(kind: str) -> IstioKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unsupported kind {kind!r}; supported: {', '.join(KINDS)}") from None


def context_kind_info(kind: str) -> IstioKind:
    try:
        return CONTEXT_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown context kind {kind!r}; known: {', '.join(CONTEXT_KINDS)}") from None

from dataclasses import dataclass


@dataclass(frozen=True)
class IstioKind:
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"


KINDS: dict[str, IstioKind] = {
    k.kind: k
    for k in (
        IstioKind("VirtualService", "networking.istio.io", "v1", "virtualservices"),
        IstioKind("DestinationRule", "networking.istio.io", "v1", "destinationrules"),
        IstioKind("Gateway", "networking.istio.io", "v1", "gateways"),
        IstioKind("ServiceEntry", "networking.istio.io", "v1", "serviceentries"),
        IstioKind("Sidecar", "networking.istio.io", "v1", "sidecars"),
        IstioKind("AuthorizationPolicy", "security.istio.io", "v1", "authorizationpolicies"),
        IstioKind("PeerAuthentication", "security.istio.io", "v1", "peerauthentications"),
        IstioKind("RequestAuthentication", "security.istio.io", "v1", "requestauthentications"),
    )
}


def kind_info(kind: str) -> IstioKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unsupported kind {kind!r}; supported: {', '.join(KINDS)}") from None

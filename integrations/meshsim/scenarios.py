"""The traffic scenario: who calls whom, how often, and how each version answers.

The scenario is static data; ``traffic.py`` combines it with the LIVE objects in the
store (Services, Pods, VirtualServices, DestinationRules, AuthorizationPolicies,
PeerAuthentications), so a policy applied through the Kubernetes API changes the
simulated traffic at the next tick.

Rates are per destination service (requests/s over all its callers and versions).
They come from, in this order: a runtime override (``POST /meshsim/traffic/rates``),
the Service annotation ``meshsim.io/rps``, the table below, else 0 (no traffic).
A Service outside the table may name its callers with the annotation
``meshsim.io/callers: "productpage,shop/frontend"`` (``app`` or ``namespace/app``);
without it the ingress gateway calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RPS_ANNOTATION = "meshsim.io/rps"
CALLERS_ANNOTATION = "meshsim.io/callers"
ROOT_NAMESPACE = "istio-system"
GATEWAY_APP = "istio-ingressgateway"
Z_99 = 2.3263478740408408  # standard normal quantile of 0.99


@dataclass(frozen=True)
class Operation:
    """One kind of request on an edge: method, path, its share of the edge's requests,
    and the JWT principal (``iss/sub``) the caller presents, if any."""

    method: str = "GET"
    path: str = "/"
    share: float = 1.0
    request_principal: str = ""


@dataclass(frozen=True)
class Edge:
    """``source`` (an app label, or an external caller's name) calls a destination service.

    ``share`` is the edge's part of the destination's rate; ``source_versions`` restricts
    which versions of the source make the calls (reviews v2/v3 call ratings, v1 does not);
    ``clusters`` restricts the edge to meshsim clusters of these names (empty: all).
    """

    source: str
    source_namespace: str
    destination: str
    destination_namespace: str
    share: float = 1.0
    operations: tuple[Operation, ...] = (Operation(),)
    source_versions: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalCaller:
    """A caller without a Pod in the store (e.g. a legacy job outside the mesh)."""

    name: str
    namespace: str
    service_account: str
    sidecar: bool = False


@dataclass(frozen=True)
class ResponseModel:
    """How a version answers: probability of a non-5xx answer and a log-normal latency
    given by its median and 99th percentile (milliseconds)."""

    success: float = 0.9995
    median_ms: float = 10.0
    p99_ms: float = 80.0

    @property
    def mu(self) -> float:
        return math.log(self.median_ms)

    @property
    def sigma(self) -> float:
        return max(math.log(self.p99_ms / self.median_ms) / Z_99, 1e-6)

    @property
    def mean_ms(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)


@dataclass(frozen=True)
class Scenario:
    name: str
    rps: dict[tuple[str, str], float]
    edges: tuple[Edge, ...]
    responses: dict[tuple[str, str, str], ResponseModel] = field(default_factory=dict)
    external_callers: tuple[ExternalCaller, ...] = ()
    default_response: ResponseModel = ResponseModel()

    def response(self, namespace: str, service: str, version: str) -> ResponseModel:
        for key in ((namespace, service, version), (namespace, service, "*")):
            if key in self.responses:
                return self.responses[key]
        return self.default_response

    def external(self, name: str, namespace: str) -> ExternalCaller | None:
        for caller in self.external_callers:
            if caller.name == name and caller.namespace == namespace:
                return caller
        return None


def _edge(source: str, destination: str, namespace: str, *ops: Operation, **kw: object) -> Edge:
    source_namespace = str(kw.pop("source_namespace", namespace))
    return Edge(source, source_namespace, destination, namespace, operations=ops, **kw)  # type: ignore[arg-type]


# The demo mesh of seeds/{staging,prod}.yaml. Operations are chosen so that the seeded
# AuthorizationPolicies allow all of them: ratings-viewer (reviews, GET), details-viewer
# (productpage, GET), payments-allow-checkout (checkout, POST /api/v1/charges) and
# frontend-require-jwt (/checkout/* needs a request principal).
DEMO = Scenario(
    name="demo",
    rps={
        ("bookinfo", "productpage"): 10.0,
        ("bookinfo", "details"): 10.0,
        ("bookinfo", "reviews"): 20.0,
        ("bookinfo", "ratings"): 12.0,
        ("shop", "frontend"): 20.0,
        ("shop", "catalog"): 16.0,
        ("shop", "cart"): 8.0,
        ("shop", "checkout"): 4.0,
        ("shop", "payments"): 4.0,
    },
    edges=(
        _edge(
            GATEWAY_APP,
            "productpage",
            "bookinfo",
            Operation("GET", "/productpage"),
            source_namespace=ROOT_NAMESPACE,
        ),
        _edge("productpage", "details", "bookinfo", Operation("GET", "/details/0")),
        _edge("productpage", "reviews", "bookinfo", Operation("GET", "/reviews/0")),
        _edge(
            "reviews",
            "ratings",
            "bookinfo",
            Operation("GET", "/ratings/0"),
            source_versions=("v2", "v3"),
        ),
        _edge(
            GATEWAY_APP,
            "frontend",
            "shop",
            Operation("GET", "/products", 0.7),
            Operation("GET", "/checkout/cart", 0.3, "https://auth.shop.example.com/customer-42"),
            source_namespace=ROOT_NAMESPACE,
        ),
        _edge("frontend", "catalog", "shop", Operation("GET", "/api/v1/products"), share=0.9375),
        # A plaintext caller: a legacy batch job in a namespace without sidecar injection.
        # Staging only (shop is PERMISSIVE there; prod is STRICT, where it would always fail).
        _edge(
            "legacy-batch",
            "catalog",
            "shop",
            Operation("GET", "/api/v1/products/export"),
            share=0.0625,
            source_namespace="batch",
            clusters=("staging",),
        ),
        _edge("frontend", "cart", "shop", Operation("GET", "/api/v1/cart")),
        _edge("frontend", "checkout", "shop", Operation("POST", "/api/v1/checkout")),
        _edge("checkout", "payments", "shop", Operation("POST", "/api/v1/charges")),
    ),
    responses={
        ("bookinfo", "productpage", "*"): ResponseModel(0.9995, 25, 180),
        ("bookinfo", "details", "*"): ResponseModel(0.9995, 3, 25),
        ("bookinfo", "reviews", "v1"): ResponseModel(0.9995, 8, 60),
        ("bookinfo", "reviews", "v2"): ResponseModel(0.9995, 12, 90),
        ("bookinfo", "reviews", "v3"): ResponseModel(0.9995, 14, 110),
        ("bookinfo", "ratings", "*"): ResponseModel(0.9995, 3, 20),
        ("shop", "frontend", "*"): ResponseModel(0.999, 30, 250),
        ("shop", "catalog", "v1"): ResponseModel(0.999, 12, 90),
        ("shop", "catalog", "v2"): ResponseModel(0.999, 10, 80),
        ("shop", "cart", "*"): ResponseModel(0.999, 6, 45),
        ("shop", "checkout", "*"): ResponseModel(0.998, 60, 400),
        ("shop", "payments", "v1"): ResponseModel(0.998, 80, 600),
        ("shop", "payments", "v2"): ResponseModel(0.998, 70, 500),
    },
    external_callers=(ExternalCaller("legacy-batch", "batch", "legacy-batch", sidecar=False),),
)

SCENARIOS = {DEMO.name: DEMO}

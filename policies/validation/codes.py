"""The catalogue of finding codes: stable identifiers with a title, level, explanation and fix.

Codes never change meaning once published; a retired check keeps its code unused. Numbering:
MG00xx parse (MG002x bundle archives), MG01xx object identity (MG011x drafts), MG02xx schema,
MG03xx VirtualService (MG0300: cluster state), MG04xx DestinationRule, MG05xx Gateway,
MG06xx security kinds, MG07xx ServiceEntry, MG08xx Sidecar, MG09xx server dry-run; checks that read
the cluster's wider state: MG10xx workloads (injection, ports, Deployments), MG11xx gateways (TLS
secrets, Kubernetes Gateway API), MG12xx extensions (EnvoyFilter, Telemetry), MG13xx WorkloadEntry;
MG15xx governance (guardrails, as the change workflow applies them).
`reference` names the matching `istioctl analyze` message (and Kiali check) or says there is none; `istio`
is the code of that message, carried by every finding as `istio_code` so users can correlate the two.
Levels follow Istio's where a governance tool can; the departures are said in the explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policies.validation.findings import Finding, Layer, Level


@dataclass(frozen=True)
class Code:
    code: str
    title: str
    level: Level
    layer: Layer
    explanation: str
    fix: str
    reference: str = ""
    istio: str = ""

    @property
    def istio_name(self) -> str:
        return ISTIO_MESSAGES.get(self.istio, "")

    @property
    def istio_label(self) -> str:
        """E.g. "IST0101 ReferencedResourceNotFound", or "" when no istioctl analyze message matches."""
        return f"{self.istio} {self.istio_name}".strip()


# The `istioctl analyze` messages Meshgate's checks correspond to (istio.io/docs/reference/config/analysis/).
ISTIO_MESSAGES = {
    "IST0002": "Deprecated",
    "IST0101": "ReferencedResourceNotFound",
    "IST0102": "NamespaceNotInjected",
    "IST0103": "PodMissingProxy",
    "IST0109": "ConflictingMeshGatewayVirtualServiceHosts",
    "IST0110": "ConflictingSidecarWorkloadSelectors",
    "IST0111": "MultipleSidecarsWithoutWorkloadSelectors",
    "IST0112": "VirtualServiceDestinationPortSelectorRequired",
    "IST0116": "DeploymentAssociatedToMultipleServices",
    "IST0118": "PortNameIsNotUnderNamingConvention",
    "IST0123": "NamespaceMultipleInjectionLabels",
    "IST0127": "NoMatchingWorkloadsFound",
    "IST0128": "NoServerCertificateVerificationDestinationLevel",
    "IST0129": "NoServerCertificateVerificationPortLevel",
    "IST0130": "VirtualServiceUnreachableRule",
    "IST0131": "VirtualServiceIneffectiveMatch",
    "IST0132": "VirtualServiceHostNotFoundInGateway",
    "IST0134": "ServiceEntryAddressesRequired",
    "IST0137": "DeploymentConflictingPorts",
    "IST0138": "GatewayDuplicateCertificate",
    "IST0140": "IngressRouteRulesNotAffected",
    "IST0144": "InvalidApplicationUID",
    "IST0145": "ConflictingGateways",
    "IST0149": "JwtClaimBasedRoutingWithoutRequestAuthN",
    "IST0151": "EnvoyFilterUsesRelativeOperation",
    "IST0152": "EnvoyFilterUsesReplaceOperationIncorrectly",
    "IST0153": "EnvoyFilterUsesAddOperationIncorrectly",
    "IST0154": "EnvoyFilterUsesRemoveOperationIncorrectly",
    "IST0155": "EnvoyFilterUsesRelativeOperationWithProxyVersion",
    "IST0157": "InvalidTelemetryProvider",
    "IST0159": "ConflictingTelemetryWorkloadSelectors",
    "IST0160": "MultipleTelemetriesWithoutWorkloadSelectors",
    "IST0161": "InvalidGatewayCredential",
    "IST0162": "GatewayPortNotDefinedOnService",
    "IST0165": "ReferencedInternalGateway",
    "IST0166": "IneffectiveSelector",
    "IST0173": "DestinationRuleSubsetNotSelectPods",
    "IST0174": "UnknownDestinationRuleHost",
    "IST0175": "JwksUriFetchUnrestricted",
    "IST0177": "ConflictingServiceEntryProtocol",
}


def _code(
    code: str, level: Level, layer: Layer, title: str, explanation: str, fix: str, reference: str = "", istio: str = ""
) -> Code:
    return Code(code, title, level, layer, explanation, fix, reference, istio)


def _ist(code: str, level: Level, title: str, explanation: str, fix: str, istio: str) -> Code:
    """A cross-resource check matching the istioctl analyze message `istio` (named in ISTIO_MESSAGES)."""
    return Code(
        code, title, level, Layer.SEMANTIC, explanation, fix, f"istioctl {istio} {ISTIO_MESSAGES[istio]}", istio
    )


# Short names keep the table below readable.
ERR, WARN, INFO = Level.ERROR, Level.WARNING, Level.INFO
PARSE, SCHEMA, CROSS, DRYRUN = Layer.PARSE, Layer.SCHEMA, Layer.SEMANTIC, Layer.DRYRUN

_WORKLOAD_CODES = (
    # --- workloads: injection, ports, Deployments (policies/validation/checks/workloads.py) ------------
    _ist(
        "MG1001",
        INFO,
        "Namespace not enabled for injection",
        "The policy's namespace has neither `istio-injection=enabled` nor an `istio.io/rev` label, so its "
        "pods get no sidecar and the sidecar-side policies (routing from those pods, mTLS, authorization) "
        "do not apply to them.",
        "Label the namespace: `kubectl label namespace NS istio-injection=enabled` (or `istio.io/rev=REV`), "
        "then restart its workloads.",
        "IST0102",
    ),
    _ist(
        "MG1002",
        WARN,
        "Namespace has several injection labels",
        "The namespace carries both `istio-injection` and `istio.io/rev`; which injector handles its pods "
        "is then unclear.",
        "Keep one: `istio.io/rev` for revision-based upgrades, or `istio-injection`.",
        "IST0123",
    ),
    _ist(
        "MG1003",
        WARN,
        "Selected pod has no sidecar",
        "The policy selects a pod that runs without the Istio proxy (its namespace is injected, but the pod "
        "was started before, or injection failed), so the policy does not apply to it.",
        "Restart or redeploy the workload so that the proxy is injected.",
        "IST0103",
    ),
    _ist(
        "MG1004",
        INFO,
        "Port name does not follow Istio's convention",
        "A port of a Service the policy applies to is neither named `<protocol>[-<suffix>]` (http, http2, "
        "https, grpc, tcp, tls, mongo, mysql, redis, ...) nor given an appProtocol, so Istio treats its "
        "traffic as opaque TCP or guesses the protocol: HTTP routes, retries and metrics may not apply.",
        "Name the port e.g. `http-web` or set `appProtocol: http`.",
        "IST0118",
    ),
    _ist(
        "MG1005",
        WARN,
        "Deployment behind several Services with different protocols",
        "A Deployment the policy applies to is selected by several Services that use the same port with "
        "different protocols; Istio cannot tell which protocol the port speaks.",
        "Use one protocol per port across the Services selecting the Deployment.",
        "IST0116",
    ),
    _ist(
        "MG1006",
        WARN,
        "Deployment behind several Services with conflicting ports",
        "A Deployment the policy applies to is selected by several Services that send the same targetPort "
        "to different Service ports.",
        "Use the same Service port for a given targetPort, or a single Service.",
        "IST0137",
    ),
    _ist(
        "MG1007",
        WARN,
        "Workload runs as the proxy's user ID",
        "A Deployment the policy applies to runs as user ID 1337, which Istio reserves for the sidecar: its "
        "traffic bypasses the proxy, so the policy does not apply to it.",
        "Run the application under another user ID.",
        "IST0144",
    ),
    _ist(
        "MG1008",
        WARN,
        "Selector matches no workload",
        "The selector of this object (Telemetry, WasmPlugin, ProxyConfig, EnvoyFilter, ...) matches no pod "
        "in its namespace (or, in the root namespace, in any namespace), so it applies to nothing yet. Pods "
        "carry their Node's topology labels, as Istio adds them.",
        "Correct the labels, or deploy the workload first.",
        "IST0127",
    ),
    # --- gateways: TLS secrets, service ports, Gateway API (policies/validation/checks/gateways.py) ---
    _ist(
        "MG1101",
        ERR,
        "Gateway TLS credential not found",
        "A Gateway server's `tls.credentialName` names no Secret in the namespace of the gateway workload "
        "(for SDS, the Secret must live next to the gateway pods), or a Secret of a type that holds no "
        "certificate. Meshgate reads Secrets' names and types only, never their data.",
        "Create the TLS Secret (`kubectl create secret tls NAME -n GATEWAY_NS --cert=... --key=...`) in "
        "the gateway's namespace, or correct the name.",
        "IST0161",
    ),
    _ist(
        "MG1102",
        WARN,
        "Selector on a Kubernetes Gateway's pods",
        "The policy selects the pods of a Kubernetes Gateway (labelled `gateway.networking.k8s.io/"
        "gateway-name`) by label; for those Istio applies policies through `targetRefs`.",
        "Use `targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: ...}]` instead of the selector.",
        "IST0166",
    ),
    _code(
        "MG1103",
        ERR,
        CROSS,
        "Target reference not found",
        "A `targetRef` / `targetRefs` entry names a Kubernetes Gateway API Gateway, a Service or a "
        "ServiceEntry that does not exist in the policy's namespace, so the policy applies to nothing.",
        "Correct the reference or create the target first.",
        "Gateway API policy attachment",
    ),
    # --- extensions: EnvoyFilter, Telemetry, WasmPlugin (policies/validation/checks/extensions.py) ----
    _ist(
        "MG1201",
        WARN,
        "EnvoyFilter relative operation without priority",
        "A patch uses INSERT_BEFORE, INSERT_AFTER or REPLACE relative to another filter while the "
        "EnvoyFilter has no `priority`; EnvoyFilters apply in creation order, so the filter it is relative "
        "to may not be there yet, and the patch is then not applied.",
        "Set `priority`, or use INSERT_FIRST / ADD, which do not depend on other filters.",
        "IST0151",
    ),
    _ist(
        "MG1202",
        ERR,
        "EnvoyFilter REPLACE on a wrong applyTo",
        "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER patches.",
        "Use MERGE, or apply the REPLACE to a filter.",
        "IST0152",
    ),
    _ist(
        "MG1203",
        ERR,
        "EnvoyFilter ADD ignored",
        "The ADD operation is ignored when applyTo is ROUTE_CONFIGURATION or HTTP_ROUTE.",
        "Use MERGE for route configurations, or a VirtualService route.",
        "IST0153",
    ),
    _ist(
        "MG1204",
        ERR,
        "EnvoyFilter REMOVE ignored",
        "The REMOVE operation is ignored when applyTo is ROUTE_CONFIGURATION or HTTP_ROUTE.",
        "Remove routes through the VirtualService instead.",
        "IST0154",
    ),
    _ist(
        "MG1205",
        WARN,
        "EnvoyFilter relative operation with proxyVersion",
        "A patch matching a proxyVersion uses a relative operation (INSERT_BEFORE/AFTER, REPLACE, MERGE, "
        "DELETE) while the EnvoyFilter has no priority; after a proxy upgrade the filter it depends on may "
        "be applied in another order.",
        "Set `priority` on the EnvoyFilter.",
        "IST0155",
    ),
    _ist(
        "MG1206",
        WARN,
        "Telemetry access logging without provider",
        "An accessLogging entry names no provider and the mesh config has no default access-log provider "
        "(`defaultProviders.accessLogging`), so the entry is ignored.",
        "Name a provider (e.g. `providers: [{name: envoy}]`) or set a default in the mesh config.",
        "IST0157",
    ),
    _ist(
        "MG1207",
        ERR,
        "Telemetries selecting the same workload",
        "Several Telemetries of the namespace select the same pod; which one applies is undefined.",
        "Merge them, or make their selectors disjoint.",
        "IST0159",
    ),
    _ist(
        "MG1208",
        ERR,
        "Several Telemetries without selector",
        "More than one Telemetry without a selector (or targetRefs) in the same namespace; which one "
        "applies is undefined.",
        "Keep one namespace-wide Telemetry; give the others selectors.",
        "IST0160",
    ),
    _code(
        "MG1209",
        WARN,
        CROSS,
        "Telemetry provider not defined",
        "A provider named in the Telemetry is not one of the mesh config's `extensionProviders`, so Istio ignores it.",
        "Add the provider to the mesh config (`meshConfig.extensionProviders`) or correct the name.",
        "Istio mesh config extensionProviders",
    ),
    # --- WorkloadEntry / WorkloadGroup (policies/validation/checks/workloads.py) ----------------------
    _code(
        "MG1301",
        INFO,
        CROSS,
        "WorkloadEntry selected by no ServiceEntry",
        "No ServiceEntry of the namespace selects the WorkloadEntry's labels (`workloadSelector`), so no "
        "host routes to it.",
        "Add a ServiceEntry with a workloadSelector matching the entry's labels, or correct the labels.",
    ),
)

_CODES = (
    # --- parse ---------------------------------------------------------------------------------
    _code(
        "MG0001",
        ERR,
        PARSE,
        "File too large",
        "A file, or the bundle as a whole, is larger than Meshgate accepts (10 MiB). It is refused "
        "without being read further.",
        "Split the bundle into smaller ones; an Istio object is rarely larger than a few KiB.",
    ),
    _code(
        "MG0002",
        ERR,
        PARSE,
        "Binary file",
        "The file holds binary data (NUL bytes or many control characters), not YAML or JSON text.",
        "Upload the YAML or JSON text itself, not an archive, image or compiled file.",
    ),
    _code(
        "MG0003",
        ERR,
        PARSE,
        "Not UTF-8",
        "The file is not valid UTF-8 text. The finding gives the byte offset of the first invalid byte.",
        "Save the file as UTF-8 (without a UTF-16 byte-order mark).",
    ),
    _code(
        "MG0004",
        ERR,
        PARSE,
        "YAML or JSON syntax error",
        "The text cannot be parsed. Objects in the file before the error were read; nothing after it.",
        "Correct the syntax at the line and column given (indentation, quotes, brackets, colons).",
    ),
    _code(
        "MG0005",
        ERR,
        PARSE,
        "Tab in indentation",
        "YAML forbids tab characters in indentation.",
        "Indent with spaces only.",
    ),
    _code(
        "MG0006",
        ERR,
        PARSE,
        "Duplicate key",
        "A mapping holds the same key twice. YAML parsers disagree on which value wins, so the API server refuses it.",
        "Keep one of the two entries, merging their content.",
    ),
    _code(
        "MG0007",
        ERR,
        PARSE,
        "Document expands too much",
        "Through YAML anchors and aliases (or sheer size) the document expands to more values than "
        "Meshgate accepts, or an alias refers to itself. This is how 'billion laughs' attacks work.",
        "Write the values out instead of using anchors and aliases.",
    ),
    _code(
        "MG0008",
        ERR,
        PARSE,
        "Nested too deeply",
        "Mappings and lists are nested deeper than any Istio object needs.",
        "Check the indentation: an object this deep is almost always a mistake.",
    ),
    _code(
        "MG0009",
        ERR,
        PARSE,
        "Document is not an object",
        "Each YAML document (or JSON value, or item of a list) must be a Kubernetes object: a mapping "
        "with apiVersion, kind, metadata and spec.",
        "Remove the stray value or wrap it in an object.",
    ),
    _code(
        "MG0010",
        ERR,
        PARSE,
        "Document too large",
        "One document is larger than Meshgate accepts (1 MiB).",
        "Split the object; an Istio object is rarely larger than a few KiB.",
    ),
    _code(
        "MG0011",
        ERR,
        PARSE,
        "Unsupported YAML construct",
        "The document uses a YAML feature with no JSON equivalent (a tag such as !!binary or !!set, or a "
        "list or mapping used as a key). Kubernetes objects are JSON.",
        "Use plain strings, numbers, booleans, lists and mappings.",
    ),
    _code("MG0012", ERR, PARSE, "Nothing to validate", "The bundle holds no object.", "Add at least one Istio object."),
    _code(
        "MG0013",
        ERR,
        PARSE,
        "Too many objects",
        "The bundle holds more objects than Meshgate validates at once (5000).",
        "Split it into several bundles.",
    ),
    # --- bundle archives (policies/bundles.py) --------------------------------------------------
    _code(
        "MG0020",
        ERR,
        PARSE,
        "Unsafe archive member",
        "An archive member has an absolute path, points outside the folder ('..'), is a link or is not a "
        "regular file. The whole archive is refused so that nothing is unpacked outside its place.",
        "Pack only the manifest files, with relative paths, into the archive.",
    ),
    _code(
        "MG0021",
        ERR,
        PARSE,
        "Unreadable archive",
        "The .zip / .tar(.gz) archive, or one of its members, cannot be read.",
        "Create the archive again, or upload the manifests themselves.",
    ),
    _code(
        "MG0022",
        ERR,
        PARSE,
        "Too many files",
        "The bundle (or archive) holds more files or entries than Meshgate accepts at once.",
        "Bundle only the folder of manifests, or split it into several bundles.",
    ),
    # --- identity ------------------------------------------------------------------------------
    _code(
        "MG0101",
        ERR,
        PARSE,
        "apiVersion or kind missing",
        "Every object needs apiVersion and kind to say what it is.",
        "Add e.g. `apiVersion: networking.istio.io/v1` and `kind: VirtualService`.",
    ),
    _code(
        "MG0102",
        ERR,
        PARSE,
        "Unsupported kind",
        "Meshgate manages every kind of the Istio CRDs (networking.istio.io, security.istio.io, "
        "telemetry.istio.io, extensions.istio.io). Other kinds (Kubernetes Deployments, Services, "
        "Gateway API routes, ...) are not checked further.",
        "Remove the object from the bundle and manage it outside Meshgate.",
    ),
    _code(
        "MG0103",
        ERR,
        PARSE,
        "Wrong apiVersion",
        "The apiVersion's group does not belong to the kind, or its version is not a Kubernetes API "
        "version name (v1, v1beta1, v1alpha3, ...). Whether the cluster serves that version is MG0207.",
        "Use the group and version given in the message, preferably v1.",
    ),
    _code(
        "MG0104",
        ERR,
        PARSE,
        "Invalid name",
        "metadata.name is missing or not a DNS-1123 subdomain (at most 253 lower-case letters, digits, "
        "'-' and '.', starting and ending with a letter or digit).",
        "Set a valid metadata.name.",
    ),
    _code(
        "MG0105",
        ERR,
        PARSE,
        "Invalid namespace",
        "metadata.namespace is missing (and no default namespace was given) or not a DNS-1123 label "
        "(at most 63 lower-case letters, digits and '-').",
        "Set metadata.namespace to the namespace the object belongs to.",
    ),
    _code(
        "MG0106",
        ERR,
        PARSE,
        "Duplicate object",
        "Two objects in the bundle have the same kind, namespace and name; one would overwrite the other.",
        "Remove one of them or give it another name.",
    ),
    # --- drafts (policies/services/drafts.py) ---------------------------------------------------
    _code(
        "MG0110",
        ERR,
        Layer.PERMISSION,
        "Not an author of the namespace",
        "Only members of the team owning a namespace in the environment may draft its policies.",
        "Ask the owning team to make the change, or to add you to the team.",
    ),
    _code(
        "MG0111",
        ERR,
        PARSE,
        "Draft names another object",
        "A draft keeps the object it was started for; its text now describes another kind, namespace or name.",
        "Restore the original identity, or start a new draft for the other object.",
    ),
    # --- schema --------------------------------------------------------------------------------
    _code(
        "MG0201",
        ERR,
        SCHEMA,
        "Invalid value",
        "A field has the wrong type, a value outside its allowed set or range, or breaks a pattern of the "
        "CRD schema the cluster serves.",
        "Use a value of the type and form the message names.",
    ),
    _code("MG0202", ERR, SCHEMA, "Required field missing", "The CRD schema requires this field.", "Add the field."),
    _code(
        "MG0203",
        ERR,
        SCHEMA,
        "Unknown field",
        "The CRD schema declares no such field; the API server would silently drop it, so the setting "
        "would have no effect. Usually a typo or a wrong indentation.",
        "Correct the field name (the message suggests the closest declared one) or its indentation.",
    ),
    _code(
        "MG0204",
        ERR,
        SCHEMA,
        "Kind not served by the cluster",
        "The environment's cluster has no CRD for this kind (Istio not installed, or an old version).",
        "Install or upgrade Istio on the cluster, or target another environment.",
    ),
    _code(
        "MG0205",
        WARN,
        SCHEMA,
        "Schema not checked",
        "The CRD schema could not be read from the environment's cluster, so fields were not checked. "
        "They will be checked again before approval and before rollout.",
        "Check the environment's cluster connection on its page, then validate again.",
    ),
    _code(
        "MG0206",
        ERR,
        SCHEMA,
        "CRD validation rule broken",
        "The object breaks one of the CRD's CEL validation rules (x-kubernetes-validations), which the "
        "API server evaluates on every create and update: e.g. two fields that exclude each other, an "
        "invalid duration, a port outside 1-65535, a wildcard where none is allowed.",
        "Change the field the message names so that the rule holds.",
    ),
    _code(
        "MG0207",
        ERR,
        SCHEMA,
        "Version not served by the cluster",
        "The object's apiVersion names a version that the cluster's CRD does not serve (or no longer "
        "serves), so the API server would refuse it.",
        "Use one of the served versions the message lists, preferably the storage version.",
    ),
    # --- cross-resource: context ---------------------------------------------------------------
    _code(
        "MG0300",
        WARN,
        CROSS,
        "Cluster state not read",
        "Namespaces, Services and Pods could not be read from the environment's cluster, so the checks "
        "that need them (hosts, ports, selectors, namespaces) were skipped.",
        "Check the environment's cluster connection on its page, then validate again.",
    ),
    _code(
        "MG0399",
        INFO,
        CROSS,
        "Cluster state read directly",
        "The environment's live inventory (kept current by the watch_inventory process) was older than "
        "MESHGATE_INVENTORY_MAX_AGE_SECONDS, so namespaces, Services and Pods were listed from the cluster "
        "for this validation. The results are right; the validation was slower.",
        "Check that the watch_inventory process runs for this environment.",
    ),
    # --- VirtualService ------------------------------------------------------------------------
    _code(
        "MG0301",
        ERR,
        CROSS,
        "Destination host not found",
        "A route sends traffic to a host that is neither a Kubernetes Service nor a ServiceEntry host. "
        "Short names resolve in the VirtualService's namespace (`reviews` is "
        "`reviews.<namespace>.svc.cluster.local`); names with dots are taken as fully qualified, and "
        "hosts outside the cluster need a ServiceEntry. Requests to such a destination fail with 503.",
        "Correct the host, use the Service's full name for another namespace, or add a ServiceEntry. A host "
        "whose Service (annotation networking.istio.io/exportTo) or ServiceEntry (exportTo) is not exported to "
        "the VirtualService's namespace is not found either, as Istio sees it.",
        "istioctl IST0101 ReferencedResourceNotFound (host); Kiali KIA1101",
        "IST0101",
    ),
    _code(
        "MG0302",
        ERR,
        CROSS,
        "Subset not defined",
        "A route names a subset that no DestinationRule for that host defines. Istio answers 503 "
        "(no healthy upstream) for it.",
        "Define the subset in the host's DestinationRule, or correct the subset name.",
        "istioctl IST0101 ReferencedResourceNotFound (host+subset in destinationrule); Kiali KIA1107",
        "IST0101",
    ),
    _code(
        "MG0303",
        ERR,
        CROSS,
        "Destination port not served",
        "The destination port is not one of the Service's ports.",
        "Use one of the ports the Service (or ServiceEntry) declares.",
        "istioctl IST0101 ReferencedResourceNotFound (host:port)",
        "IST0101",
    ),
    _code(
        "MG0304",
        ERR,
        CROSS,
        "Destination port missing",
        "The Service (or ServiceEntry) has several ports and the destination names none, so the route is "
        "ambiguous; istioctl reports it as an error too.",
        "Set destination.port.number.",
        "istioctl IST0112 VirtualServiceDestinationPortSelectorRequired",
        "IST0112",
    ),
    _code(
        "MG0305",
        ERR,
        CROSS,
        "Gateway not found",
        "The VirtualService binds to a Gateway that does not exist. A bare name means a Gateway in the "
        "VirtualService's namespace; use `namespace/name` for another one; `mesh` means the sidecars.",
        "Correct the reference or create the Gateway.",
        "istioctl IST0101 ReferencedResourceNotFound (gateway); Kiali KIA1102",
        "IST0101",
    ),
    _code(
        "MG0306",
        ERR,
        CROSS,
        "Weights do not add up to 100",
        "When a route has more than one destination their weights must add up to 100 (a single "
        "destination may omit its weight). Istio itself normalises relative weights, but Meshgate requires "
        "percentages so that reviewers read the split the way the proxies apply it.",
        "Set a weight on every destination so that they add up to 100.",
        "no istioctl analyze message (Istio normalises weights); Kiali KIA1104",
    ),
    _code(
        "MG0307",
        WARN,
        CROSS,
        "Route never used",
        "An HTTP, TCP or TLS route is never reached: an earlier route has no match and takes every request, "
        "or every match of this route is already used by earlier routes. istioctl reports the second case, and "
        "the first when the later route has no match either ('only the last rule can have no matches').",
        "Move the catch-all route to the end of the list, or give it a match; remove duplicated routes.",
        "istioctl IST0130 VirtualServiceUnreachableRule; Kiali KIA1106",
        "IST0130",
    ),
    _code(
        "MG0308",
        WARN,
        CROSS,
        "Match shadowed by an identical one",
        "An earlier match (of another route, or of the same route) is exactly the same, so this one never "
        "receives the requests it describes. Checked for HTTP, TCP and TLS routes.",
        "Remove the duplicate match or make it differ.",
        "istioctl IST0131 VirtualServiceIneffectiveMatch (duplicate match); Kiali KIA1106",
        "IST0131",
    ),
    _code(
        "MG0309",
        ERR,
        CROSS,
        "Host bound by two VirtualServices",
        "Two VirtualServices bound to the sidecars (`mesh`, also when no gateway is given) declare the same or "
        "overlapping hosts and are visible in a common namespace (exportTo). Istio then uses only one of them, "
        "and which one is not defined. VirtualServices bound to the same ingress Gateway are merged by Istio "
        "and not reported.",
        "Merge the routes into one VirtualService, use delegation, or narrow exportTo.",
        "istioctl IST0109 ConflictingMeshGatewayVirtualServiceHosts",
        "IST0109",
    ),
    _code(
        "MG0310",
        ERR,
        CROSS,
        "VirtualService has no hosts",
        "spec.hosts is empty and no other VirtualService delegates to this one, so it applies to nothing.",
        "List the hosts the routes apply to, or reference it from another VirtualService's `delegate`.",
    ),
    _code(
        "MG0314",
        WARN,
        CROSS,
        "Subset routing not applied to gateway traffic",
        "This VirtualService, bound to a Gateway, routes to a host without a subset, while another VirtualService "
        "splits that host's traffic by subsets. Requests entering through the gateway follow this route only, so "
        "the subset split does not apply to them.",
        "Route gateway traffic to the subsets here as well, or bind the subset routing to the gateway too.",
        "istioctl IST0140 IngressRouteRulesNotAffected",
        "IST0140",
    ),
    _code(
        "MG0315",
        ERR,
        CROSS,
        "JWT claim routing without RequestAuthentication",
        "A route matches on a JWT claim (@request.auth.claims.*) on a Gateway whose pods no "
        "RequestAuthentication selects (in their namespace or istio-system), so the claim is never set and the "
        "match never applies.",
        "Add a RequestAuthentication selecting the gateway pods.",
        "istioctl IST0149 JwtClaimBasedRoutingWithoutRequestAuthN",
        "IST0149",
    ),
    _code(
        "MG0316",
        WARN,
        CROSS,
        "Gateway reference to an internal Gateway",
        "The VirtualService binds to a Gateway Istio generates internally for a Kubernetes Gateway API Gateway "
        "(its name holds 'istio-autogenerated-k8s-gateway'). Such names are an implementation detail and change.",
        "Bind routes to the Gateway API Gateway with an HTTPRoute, or to an Istio Gateway of your own.",
        "istioctl IST0165 ReferencedInternalGateway",
        "IST0165",
    ),
    _code(
        "MG0311",
        WARN,
        CROSS,
        "Regular expression not valid",
        "A regex match does not compile (checked with Python's engine as an approximation of the RE2 "
        "engine Envoy uses), or uses a construct RE2 lacks (lookaround, backreferences).",
        "Correct the expression; RE2 syntax is documented at github.com/google/re2/wiki/Syntax.",
    ),
    _code(
        "MG0312",
        INFO,
        CROSS,
        "Match covered by an earlier prefix match",
        "An earlier URI prefix match covers this one (its prefix starts this one's, with the same port, method, "
        "authority, headers, query parameters and withoutHeaders, or broader ones), so it never receives "
        "requests. As istioctl does, a match without method counts as GET.",
        "Put the more specific prefix first, or remove it.",
        "istioctl IST0131 VirtualServiceIneffectiveMatch (overlapping prefix)",
        "IST0131",
    ),
    _code(
        "MG0313",
        WARN,
        CROSS,
        "Host not served by the Gateway",
        "None of the VirtualService's hosts is among the hosts of a Gateway it binds to (spec.gateways), so "
        "the Gateway never sends it traffic.",
        "Add the host to a server of the Gateway, or correct the VirtualService's hosts.",
        "istioctl IST0132 VirtualServiceHostNotFoundInGateway",
        "IST0132",
    ),
    _code(
        "MG0317",
        WARN,
        CROSS,
        "Deprecated fault delay percent",
        "A route's fault delay uses `percent`, an integer field Istio deprecated in favour of `percentage` "
        "(a fraction, e.g. `{value: 0.1}`).",
        "Replace `fault.delay.percent: N` by `fault.delay.percentage: {value: N}`.",
        "istioctl IST0002 Deprecated (HTTPRoute.fault.delay.percent)",
        "IST0002",
    ),
    # --- DestinationRule -----------------------------------------------------------------------
    _code(
        "MG0401",
        WARN,
        CROSS,
        "DestinationRule host not found",
        "The host is neither a Kubernetes Service nor a ServiceEntry host, so the rule applies to nothing yet.",
        "Correct the host (short names resolve in the rule's namespace) or deploy the Service first.",
        "istioctl IST0174 UnknownDestinationRuleHost; Kiali KIA0202",
        "IST0174",
    ),
    _code(
        "MG0402",
        ERR,
        CROSS,
        "Duplicate subset name",
        "Two subsets have the same name; routes to it would pick one at random.",
        "Give every subset a distinct name.",
        "no istioctl analyze message (Istio's validation refuses it)",
    ),
    _code(
        "MG0403",
        WARN,
        CROSS,
        "Subset selects no pod",
        "No running pod of the host's Service carries the subset's labels, so traffic routed to the "
        "subset fails with 503. istioctl reports this as an error; Meshgate warns, since a version is often "
        "deployed after its subset is declared.",
        "Correct the labels, or deploy the version first.",
        "istioctl IST0173 DestinationRuleSubsetNotSelectPods; Kiali KIA0203",
        "IST0173",
    ),
    _code(
        "MG0404",
        WARN,
        CROSS,
        "Several DestinationRules for one host",
        "More than one DestinationRule without workloadSelector in the namespace applies to the same host and "
        "they are exported to a common namespace (exportTo); Istio merges them in an unspecified order, so "
        "conflicting settings are applied unpredictably.",
        "Keep one DestinationRule per host and namespace.",
        "no istioctl analyze message (istiod logs the merge); Kiali KIA0201",
    ),
    _code(
        "MG0405",
        ERR,
        CROSS,
        "mTLS conflict",
        "A DestinationRule disables TLS towards workloads whose PeerAuthentication requires STRICT "
        "mutual TLS: they refuse the plain-text connections and every request fails.",
        "Use `tls.mode: ISTIO_MUTUAL` (or remove the tls setting), or relax the PeerAuthentication.",
        "no current istioctl analyze message (IST0113 MTLSPolicyConflict was retired with auto mTLS); Kiali KIA0501",
    ),
    _code(
        "MG0406",
        INFO,
        CROSS,
        "mTLS disabled towards permissive workloads",
        "A DestinationRule disables TLS towards workloads in PERMISSIVE mode: requests work but travel in plain text.",
        "Use `tls.mode: ISTIO_MUTUAL` unless plain text is intended.",
    ),
    _code(
        "MG0407",
        WARN,
        CROSS,
        "Server certificate not verified",
        "The DestinationRule's trafficPolicy originates TLS (mode SIMPLE or MUTUAL) without caCertificates, so "
        "the server's certificate is not verified. A credentialName on a rule with a workloadSelector (a "
        "gateway's egress) carries its own CA and is not reported.",
        "Set tls.caCertificates (or a credentialName with a workloadSelector).",
        "istioctl IST0128 NoServerCertificateVerificationDestinationLevel",
        "IST0128",
    ),
    _code(
        "MG0408",
        WARN,
        CROSS,
        "Server certificate not verified on a port",
        "A portLevelSettings entry originates TLS (mode SIMPLE or MUTUAL) without caCertificates, so the "
        "server's certificate is not verified on that port.",
        "Set tls.caCertificates on the port's settings.",
        "istioctl IST0129 NoServerCertificateVerificationPortLevel",
        "IST0129",
    ),
    # --- Gateway -------------------------------------------------------------------------------
    _code(
        "MG0501",
        ERR,
        CROSS,
        "Gateway selector matches no pod",
        "No pod in any namespace carries the Gateway's selector labels, so no gateway proxy serves it.",
        "Use the labels of the gateway deployment, e.g. `istio: ingressgateway`.",
        "istioctl IST0101 ReferencedResourceNotFound (selector)",
        "IST0101",
    ),
    _code(
        "MG0502",
        ERR,
        CROSS,
        "Conflicting Gateways",
        "Another Gateway selects some of the same gateway pods (by the pods its selector matches, or the same "
        "selector while no pod runs) and declares the same port number with an overlapping host; the proxy "
        "can serve only one of them.",
        "Merge the servers into one Gateway, or use different hosts or ports.",
        "istioctl IST0145 ConflictingGateways",
        "IST0145",
    ),
    _code(
        "MG0503",
        WARN,
        CROSS,
        "Credential on a non-TLS server",
        "tls.credentialName is set on a server whose protocol is not HTTPS or TLS, so it is ignored.",
        "Set the port's protocol to HTTPS (or TLS), or remove the tls block.",
    ),
    _code(
        "MG0505",
        WARN,
        CROSS,
        "Gateway port not on the gateway's Service",
        "No Service selecting the Gateway's pods declares the server's port (as port or numeric targetPort), so "
        "traffic cannot reach the gateway on it. istioctl compares with the targetPorts only; Meshgate accepts "
        "either, as Istio translates a Service port to its targetPort.",
        "Use a port of the gateway Service, or add the port to it.",
        "istioctl IST0162 GatewayPortNotDefinedOnService",
        "IST0162",
    ),
    _code(
        "MG0504",
        WARN,
        CROSS,
        "Certificate shared by several Gateways",
        "Servers of different Gateways on the same gateway pods use the same TLS certificate (credentialName, or "
        "serverCertificate and privateKey). Clients re-using an HTTP/2 connection for another host of the same "
        "certificate then get 404s.",
        "Serve the hosts of one certificate from one Gateway, or use distinct certificates.",
        "istioctl IST0138 GatewayDuplicateCertificate",
        "IST0138",
    ),
    # --- security kinds ------------------------------------------------------------------------
    _code(
        "MG0601",
        WARN,
        CROSS,
        "Selector matches no workload",
        "No pod in the policy's namespace carries the selector's labels, so the policy applies to nothing (yet).",
        "Correct the labels, or deploy the workload first.",
        "istioctl IST0127 NoMatchingWorkloadsFound (AuthorizationPolicy; istioctl has no such check for the "
        "authentication kinds); Kiali KIA0004",
        "IST0127",
    ),
    _code(
        "MG0602",
        WARN,
        CROSS,
        "Source namespace does not exist",
        "The rule names a source namespace the cluster does not have, so that part of the rule never matches.",
        "Correct the namespace name. Patterns with one `*` at the start or the end (`*-prod`, `team-*`) are "
        "compared with the namespaces as Istio does.",
        "istioctl IST0101 ReferencedResourceNotFound (namespace); Kiali KIA0101",
        "IST0101",
    ),
    _code(
        "MG0603",
        WARN,
        CROSS,
        "Malformed principal",
        "Principals are SPIFFE identities without the `spiffe://` prefix, "
        "`<trust-domain>/ns/<namespace>/sa/<service-account>`, or `*`, optionally with one `*` at the "
        "start or the end. Other forms never match.",
        "Write the principal as e.g. `cluster.local/ns/bookinfo/sa/bookinfo-reviews`.",
        "Kiali KIA0102-like",
    ),
    _code(
        "MG0604",
        WARN,
        CROSS,
        "Principal in a namespace that does not exist",
        "The principal names a namespace the cluster does not have, so it never matches.",
        "Correct the namespace in the principal.",
        "Kiali KIA0106",
    ),
    _code(
        "MG0605",
        WARN,
        CROSS,
        "Rule allows every request",
        "An ALLOW policy has an empty rule `{}`, which matches every request, so the policy allows everything.",
        "Add from/to/when conditions to the rule, or remove it.",
    ),
    _code(
        "MG0606",
        INFO,
        CROSS,
        "DENY policy without rules",
        "A DENY policy with no rules matches no request, so it denies nothing.",
        "Add rules, or use an ALLOW policy without rules to deny everything.",
    ),
    _code(
        "MG0607",
        ERR,
        CROSS,
        "Port-level mTLS without selector",
        "Istio accepts portLevelMtls only on a PeerAuthentication with a workload selector.",
        "Add `selector.matchLabels`, or move the setting to `mtls`.",
    ),
    _code(
        "MG0608",
        ERR,
        CROSS,
        "Several namespace-wide PeerAuthentications",
        "More than one PeerAuthentication without selector in the same namespace (mesh-wide when the "
        "namespace is istio-system); Istio uses only the oldest.",
        "Keep one; put workload-specific settings in policies with a selector.",
        "no istioctl analyze message (istiod picks the oldest); Kiali KIA0505",
    ),
    _code(
        "MG0609",
        WARN,
        CROSS,
        "JWKS not fetched over HTTPS",
        "jwksUri is not an https URL; keys fetched over plain HTTP can be tampered with.",
        "Use an https jwksUri.",
    ),
    _code(
        "MG0610",
        ERR,
        CROSS,
        "JWT issuer missing",
        "A jwtRules entry has no issuer, so no token is ever accepted by it.",
        "Set `issuer` to the token issuer (the `iss` claim).",
    ),
    _code(
        "MG0611",
        WARN,
        CROSS,
        "Namespace-wide policy in a namespace without workloads",
        "An AuthorizationPolicy without selector applies to the workloads of its namespace, and the namespace "
        "runs no pod (the root namespace excepted, where a policy without selector applies mesh-wide).",
        "Create the policy in the namespace of the workloads it is meant for, or deploy them first.",
        "istioctl IST0127 NoMatchingWorkloadsFound",
        "IST0127",
    ),
    _code(
        "MG0612",
        WARN,
        CROSS,
        "JWKS fetches not restricted",
        "RequestAuthentication resources exist and istiod (a Deployment labelled `app=istiod`) has no "
        "`BLOCKED_CIDRS_IN_JWKS_URIS` environment variable: istiod fetches any jwksUri a policy names, "
        "including addresses inside the cluster's networks.",
        "Set `BLOCKED_CIDRS_IN_JWKS_URIS` on istiod (e.g. `10.0.0.0/8,172.16.0.0/12,192.168.0.0/16`) to keep "
        "JWKS fetches away from internal networks.",
        "istioctl IST0175 JwksUriFetchUnrestricted (reported on the istiod Deployment; here on the bundle's "
        "first RequestAuthentication)",
        "IST0175",
    ),
    # --- ServiceEntry --------------------------------------------------------------------------
    _code(
        "MG0701",
        ERR,
        CROSS,
        "STATIC resolution without endpoints",
        "A ServiceEntry with `resolution: STATIC` needs endpoints (or a workloadSelector): there is "
        "nothing to send the traffic to.",
        "Add endpoints, a workloadSelector, or use `resolution: DNS`.",
    ),
    _code(
        "MG0702",
        ERR,
        CROSS,
        "Wildcard host with DNS resolution",
        "A wildcard host cannot be resolved through DNS when the ServiceEntry lists no endpoints.",
        "Use `resolution: NONE` for wildcard hosts, or list concrete hosts.",
    ),
    _code(
        "MG0703",
        WARN,
        CROSS,
        "Addresses required for this protocol",
        "A ServiceEntry without addresses has a port whose protocol is TCP or unset: the sidecar cannot tell its "
        "traffic apart from other TCP traffic on that port without an address (unless DNS auto-allocation is "
        "enabled in the mesh).",
        "Add spec.addresses, or set the port's protocol (e.g. HTTP, HTTPS, TLS).",
        "istioctl IST0134 ServiceEntryAddressesRequired",
        "IST0134",
    ),
    _code(
        "MG0704",
        WARN,
        CROSS,
        "Conflicting protocols for a host and port",
        "Several ServiceEntries visible in a common namespace declare the same host and port number with "
        "different protocols; the proxies use only one of them.",
        "Use the same protocol in every ServiceEntry for the host, or merge them.",
        "istioctl IST0177 ConflictingServiceEntryProtocol",
        "IST0177",
    ),
    # --- Sidecar -------------------------------------------------------------------------------
    _code(
        "MG0801",
        ERR,
        CROSS,
        "Several default Sidecars in a namespace",
        "More than one Sidecar without workloadSelector in the same namespace; Istio's behaviour is then undefined.",
        "Keep one Sidecar without selector per namespace.",
        "istioctl IST0111 MultipleSidecarsWithoutWorkloadSelectors",
        "IST0111",
    ),
    _code(
        "MG0802",
        ERR,
        CROSS,
        "Malformed egress host",
        "Egress hosts are `namespace/dnsName`: the namespace is a name, `*`, `.` (the Sidecar's "
        "namespace) or `~` (none); dnsName is `*`, `*.suffix` or a DNS name.",
        "Write e.g. `./*`, `istio-system/*` or `*/api.example.com`.",
    ),
    _code(
        "MG0803",
        WARN,
        CROSS,
        "Sidecar selector matches no pod",
        "No pod in the Sidecar's namespace carries its workloadSelector labels, so it applies to nothing. "
        "istioctl reports this as an error; Meshgate warns, since the workload may be deployed later.",
        "Correct the labels, or deploy the workload first.",
        "istioctl IST0101 ReferencedResourceNotFound (selector)",
        "IST0101",
    ),
    _code(
        "MG0804",
        ERR,
        CROSS,
        "Sidecars select the same pod",
        "Several Sidecars with a workloadSelector select the same pod; Istio's behaviour is then undefined.",
        "Make the selectors disjoint, or merge the Sidecars.",
        "istioctl IST0110 ConflictingSidecarWorkloadSelectors",
        "IST0110",
    ),
    _code(
        "MG0805",
        WARN,
        CROSS,
        "Sidecar egressProxy ignored",
        "`outboundTrafficPolicy.egressProxy` is deprecated: istioctl analyze reports it as ignored, so "
        "traffic to unknown destinations cannot be counted on to reach that proxy.",
        "Remove `egressProxy`; route such traffic through an egress gateway (ServiceEntry, Gateway and "
        "VirtualService) instead.",
        "istioctl IST0002 Deprecated (OutboundTrafficPolicy.EgressProxy ignored)",
        "IST0002",
    ),
    *_WORKLOAD_CODES,
    # --- server dry-run ------------------------------------------------------------------------
    _code(
        "MG0901",
        ERR,
        DRYRUN,
        "Rejected by the API server",
        "The cluster's API server rejected the object in a dry-run (nothing was stored): it breaks a "
        "rule the local checks do not know, e.g. a CEL rule or an admission webhook.",
        "Fix the field the message names.",
    ),
    _code(
        "MG0902",
        ERR,
        DRYRUN,
        "Dry-run failed",
        "The API server refused the dry-run for another reason: the namespace does not exist, the object "
        "changed meanwhile, or an internal error.",
        "Follow the server's message; retry when it was a transient error.",
    ),
    _code(
        "MG0903",
        WARN,
        DRYRUN,
        "Dry-run not performed",
        "The cluster could not be reached (or refused Meshgate's credentials), so the server dry-run did "
        "not run. It runs again before rollout.",
        "Check the environment's cluster connection, then validate again.",
    ),
    _code(
        "MG0904",
        WARN,
        DRYRUN,
        "Fields owned by another manager",
        "Fields of the live object are managed by another tool (e.g. kubectl). A rollout takes them "
        "over; that tool's next apply would take them back.",
        "Stop managing the object with the other tool, or coordinate with its owner.",
    ),
    _code(
        "MG0905",
        ERR,
        DRYRUN,
        "The cluster would not hold the approved content",
        "The server's dry-run answer to the rollout's exact write differs from the approved content: a "
        "field another applier owns would survive, or the server adds a default. Approving it would "
        "approve something the cluster will not hold.",
        "Put the field (or the default) into the content, or have its other manager release it.",
    ),
    _code(
        "MG0906",
        WARN,
        DRYRUN,
        "Managed by another controller",
        "The live object is managed by a GitOps or package tool (Argo CD, Flux, Helm): its controller "
        "will revert Meshgate's write at its next sync.",
        "Change the object in that tool's source, or take it out of the tool before rolling out.",
    ),
    _code(
        "MG0907",
        ERR,
        DRYRUN,
        "Refused: managed by another controller",
        "The live object is managed by a GitOps or package tool (Argo CD, Flux, Helm) and this "
        "environment refuses changes to such objects: the controller would revert the write.",
        "Change the object in that tool's source, or take it out of the tool.",
    ),
    _code(
        "MG0908",
        ERR,
        DRYRUN,
        "Promotion conflict",
        "The promoted change edits a field whose value in the target environment differs from the "
        "source environment's base: applying the edit would overwrite the target's own value.",
        "Edit the item to the value the target environment should hold; that resolves the conflict.",
    ),
    # --- governance: guardrails as the change workflow will apply them ----------------------------
    _code(
        "MG1501",
        ERR,
        Layer.GUARDRAIL,
        "Blocked by a guardrail",
        "A hard-mandatory guardrail (or a soft-mandatory one, unless an admin overrides it with a written "
        "reason) fails for the object: a change holding it cannot be approved.",
        "Change the object so that the guardrail passes; the message says what it checks.",
    ),
    _code(
        "MG1502",
        WARN,
        Layer.GUARDRAIL,
        "Advisory guardrail failed",
        "An advisory guardrail fails for the object. It does not block the change; approvers see it.",
        "Consider the guardrail's advice; the message says what it checks.",
    ),
)

CATALOGUE: dict[str, Code] = {code.code: code for code in _CODES}


def lookup(code: str) -> Code:
    return CATALOGUE[code]


def finding(code: str, message: str, **where: Any) -> Finding:
    """A Finding with the level, layer and Istio code the catalogue gives the code.

    An `istio_code` keyword (str) overrides the catalogue's where one check reports cases istioctl reports and
    cases it does not ("" for the latter); None keeps the catalogue's.
    """
    entry = CATALOGUE[code]
    istio_code = where.pop("istio_code", None)
    return Finding(
        code=code,
        level=entry.level,
        message=message,
        layer=entry.layer.value,
        istio_code=entry.istio if istio_code is None else istio_code,
        **where,
    )

"""Guided wizards: small Django forms that write one Istio object (or two) as YAML.

Each form is built with a `LiveSnapshot` (policies/live.py) of the chosen environment: the
services, versions, subsets and service accounts it offers, and the current VirtualService or
DestinationRule it starts from, so that a wizard changes the route it is about instead of
replacing the whole object. Generation is pure Python: `form.documents()` returns plain dicts and
`form.to_yaml()` dumps them; the result opens in the editor and is saved as a draft like any text.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml
from django import forms
from django.core.validators import RegexValidator

from integrations.kubernetes import kind_info
from policies.choices import PolicyKind
from policies.live import CLUSTER_DOMAIN, LiveService, LiveSnapshot

DNS_SUBDOMAIN = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "Lower-case letters, digits, '-' and '.', starting and ending with a letter or digit.",
)
DURATION_RE = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)$")
DURATION_HELP = "A duration such as 500ms, 2s or 1m."
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
RETRY_ON = [
    ("5xx", "5xx: any 5xx answer"),
    ("gateway-error", "gateway-error: 502, 503, 504"),
    ("reset", "reset: connection reset, no answer"),
    ("connect-failure", "connect-failure"),
    ("refused-stream", "refused-stream"),
    ("retriable-4xx", "retriable-4xx: 409"),
    ("retriable-status-codes", "retriable-status-codes"),
    ("unavailable", "unavailable (gRPC)"),
    ("cancelled", "cancelled (gRPC)"),
    ("deadline-exceeded", "deadline-exceeded (gRPC)"),
    ("resource-exhausted", "resource-exhausted (gRPC)"),
]
NAMESPACE_WIDE = "*"
# Bootstrap classes per widget type (`BoundField.widget_type`); anything else is a form-control.
WIDGET_CLASSES = {
    "select": "form-select form-select-sm",
    "selectmultiple": "form-select form-select-sm",
    "checkbox": "form-check-input",
    "radioselect": "form-check-input",
    "checkboxselectmultiple": "form-check-input",
}


def duration_field(
    label: str, *, required: bool = False, initial: str | None = None, help_text: str = DURATION_HELP
) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        initial=initial,
        max_length=16,
        help_text=help_text,
        validators=[RegexValidator(DURATION_RE, "Use a number and a unit: ms, s, m or h (e.g. 500ms, 2s).")],
        widget=forms.TextInput(
            attrs={"placeholder": initial or "e.g. 2s", "autocomplete": "off", "spellcheck": "false"}
        ),
    )


def duration_seconds(value: str) -> float:
    match = DURATION_RE.match(value)
    assert match, value
    number = float(value[: match.start(2)])
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def percentage_field(label: str, initial: float = 100.0) -> forms.DecimalField:
    return forms.DecimalField(
        label=label,
        initial=initial,
        min_value=0,
        max_value=100,
        decimal_places=3,
        required=False,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
    )


def principal(namespace: str, service_account: str) -> str:
    return f"{CLUSTER_DOMAIN}/ns/{namespace}/sa/{service_account}"


def _grouped(items: list[tuple[str, str, str]]) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(group, value, label)] → Django's grouped choices, groups in first-seen order."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for group, value, label in items:
        groups.setdefault(group, []).append((value, label))
    return list(groups.items())


def _service_label(service: LiveService) -> str:
    versions = ", ".join(service.versions)
    return f"{service.name}  ({versions})" if versions else service.name


def _object(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": kind_info(kind).api_version,
        "kind": str(kind),
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


TOP_LEVEL_ORDER = ("apiVersion", "kind", "metadata", "spec")
# Below the top level keys are sorted (stored JSON keeps no reliable order across databases),
# except these, which read best first: `- name: v1` then its labels, `host:` then the rest.
LEADING_KEYS = ("name", "namespace", "host", "hosts")


def readable_order(value: Any, *, top: bool = False) -> Any:
    """An object's keys in the order people write them (a copy)."""
    if isinstance(value, dict):
        leading = TOP_LEVEL_ORDER if top else LEADING_KEYS
        keys = [k for k in leading if k in value] + sorted(k for k in value if k not in leading)
        return {k: readable_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [readable_order(item) for item in value]
    return copy.deepcopy(value)


def _based_on(content: dict[str, Any] | None) -> dict[str, Any] | None:
    """A copy of a current revision keeping only what an author writes (identity, labels, spec)."""
    if not content:
        return None
    metadata = content.get("metadata") or {}
    kept = {key: metadata[key] for key in ("name", "namespace", "labels", "annotations") if metadata.get(key)}
    return {
        "apiVersion": content.get("apiVersion") or "",
        "kind": content.get("kind") or "",
        "metadata": readable_order(kept),
        "spec": readable_order(content.get("spec") or {}),
    }


class WizardForm(forms.Form):
    """Base: a `service` choice from the snapshot, an optional object `name`, and YAML output."""

    kind: ClassVar[str]
    service_label: ClassVar[str] = "Service"
    service_help: ClassVar[str] = ""

    name = forms.CharField(
        label="Object name",
        required=False,
        max_length=253,
        validators=[DNS_SUBDOMAIN],
        help_text="Leave empty for the usual name.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    uses_service: ClassVar[bool] = True
    # The form's other fields depend on the chosen service: the page reloads them when it changes.
    refresh_on_service: ClassVar[bool] = False

    def _set_choices(self, name: str, choices: Any) -> None:
        field = self.fields[name]
        assert isinstance(field, forms.ChoiceField), name
        field.choices = choices

    def __init__(self, *args: Any, snapshot: LiveSnapshot, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.snapshot = snapshot
        if self.uses_service:
            self.fields["service"] = self._service_field()
            if not self.is_bound and not self.initial.get("service") and snapshot.services:
                self.initial["service"] = snapshot.services[0].key
        self.order_fields(["service", *[f for f in self.fields if f not in ("service", "name")], "name"])
        self.style_widgets()

    def style_widgets(self) -> None:
        for name, field in self.fields.items():
            css = WIDGET_CLASSES.get(self[name].widget_type, "form-control form-control-sm")
            current = field.widget.attrs.get("class", "")
            if css not in current:
                field.widget.attrs["class"] = f"{current} {css}".strip()

    # --- service selection ------------------------------------------------------------------

    def _service_field(self) -> forms.Field:
        if self.snapshot.services:
            choices = _grouped([(s.namespace, s.key, _service_label(s)) for s in self.snapshot.services])
            return forms.ChoiceField(
                label=self.service_label,
                choices=[("", "Choose a service…"), *choices],
                help_text=self.service_help,
            )
        return forms.CharField(
            label=self.service_label,
            max_length=127,
            help_text="namespace/service, in a namespace your team owns (the cluster's services could not be listed).",
            widget=forms.TextInput(attrs={"placeholder": "namespace/service", "autocomplete": "off"}),
        )

    def clean_service(self) -> LiveService:
        value = self.cleaned_data["service"]
        namespace, sep, name = value.partition("/")
        if not sep or not name:
            raise forms.ValidationError("Write it as namespace/service.")
        if namespace not in self.snapshot.namespaces:
            raise forms.ValidationError(f"Your teams do not own the namespace {namespace!r} in this environment.")
        DNS_SUBDOMAIN(name)
        return self.snapshot.service(value) or LiveService(namespace=namespace, name=name)

    def selected_service(self) -> LiveService | None:
        """The service the form is about, bound or not (dynamic fields depend on it)."""
        key = self.data.get(self.add_prefix("service")) if self.is_bound else self.initial.get("service")
        return self.snapshot.service(key) if key else None

    has_weights: ClassVar[bool] = False

    def problems(self) -> list[str]:
        """Every error as one line, prefixed with its field's label (for the preview)."""
        lines = []
        for name, errors in self.errors.items():
            label = "" if name == "__all__" or name not in self.fields else f"{self.fields[name].label}: "
            lines += [f"{label}{error}" for error in errors]
        return lines

    # --- output -----------------------------------------------------------------------------

    def documents(self) -> list[dict[str, Any]]:
        """The generated objects (call after `is_valid()`)."""
        return [self.build()]

    def build(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_yaml(self) -> str:
        return to_yaml(self.documents())

    @property
    def namespace(self) -> str:
        return self.cleaned_data["service"].namespace

    def object_name(self, default: str) -> str:
        return self.cleaned_data.get("name") or default


# --- VirtualService wizards -------------------------------------------------------------------


class VirtualServiceWizard(WizardForm):
    """Starts from the current VirtualService routing the service, if there is one."""

    kind = PolicyKind.VIRTUAL_SERVICE

    def base(self) -> dict[str, Any]:
        service: LiveService = self.cleaned_data["service"]
        existing = _based_on(self.snapshot.virtual_service_for(service))
        if existing and not self.cleaned_data.get("name"):
            return existing
        spec = {"hosts": [service.name], "http": [{"route": [{"destination": {"host": service.name}}]}]}
        return _object(self.kind, self.object_name(service.name), service.namespace, spec)

    @staticmethod
    def http_routes(obj: dict[str, Any]) -> list[dict[str, Any]]:
        http = obj["spec"].setdefault("http", [])
        if not http:
            http.append({"route": [{"destination": {"host": obj["spec"]["hosts"][0]}}]})
        return http


class TrafficShiftForm(VirtualServiceWizard):
    """Weights per subset on the service's default route, adding up to 100."""

    refresh_on_service = True
    has_weights = True
    service_help = "The weights apply to the subsets of this service's DestinationRule."

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.service_obj = self.selected_service()
        self.weights_error = ""
        self.weight_names: list[str] = []
        current = self._current_weights(self.service_obj) if self.service_obj else {}
        for position, subset in enumerate(self.service_obj.subsets if self.service_obj else ()):
            field_name = f"weight_{subset.name}"
            default = current.get(subset.name, 0) if current else (100 if position == 0 else 0)
            self.fields[field_name] = forms.IntegerField(
                label=subset.name,
                min_value=0,
                max_value=100,
                initial=default,
                help_text=", ".join(f"{k}={v}" for k, v in subset.labels) or "no labels",
                widget=forms.NumberInput(
                    attrs={"class": "form-control form-control-sm mg-weight", "inputmode": "numeric"}
                ),
            )
            self.weight_names.append(field_name)
        self.style_widgets()

    def _current_weights(self, service: LiveService) -> dict[str, int]:
        content = self.snapshot.virtual_service_for(service)
        if not content:
            return {}
        default = _default_route((content.get("spec") or {}).get("http") or [])
        weights: dict[str, int] = {}
        routes = (default or {}).get("route") or []
        for route in routes:
            subset = (route.get("destination") or {}).get("subset")
            if subset:
                weights[subset] = int(route.get("weight", 100 if len(routes) == 1 else 0))
        return weights

    def weight_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.weight_names]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        service = cleaned.get("service")
        if service is None:
            return cleaned
        if not service.subsets:
            self.add_error(
                "service",
                f"{service.name} has no subsets in a DestinationRule of this environment: define them first "
                "(the circuit-breaker wizard adds one subset per version).",
            )
            return cleaned
        weights = [cleaned.get(name) for name in self.weight_names]
        given = [w for w in weights if w is not None]
        if len(given) == len(weights) and sum(given) != 100:
            self.weights_error = f"The weights must add up to 100 (they add up to {sum(given)})."
            self.add_error(None, self.weights_error)
        return cleaned

    def weighted(self) -> list[tuple[str, int]]:
        return [
            (name.removeprefix("weight_"), self.cleaned_data[name])
            for name in self.weight_names
            if self.cleaned_data[name] > 0
        ]

    def build(self) -> dict[str, Any]:
        service: LiveService = self.cleaned_data["service"]
        obj = self.base()
        http = self.http_routes(obj)
        route = _default_route(http)
        if route is None:
            route = {}
            http.append(route)
        ports = [(r.get("destination") or {}).get("port") for r in route.get("route") or []]
        port = next((p for p in ports if p), None)
        destinations = []
        for subset, weight in self.weighted():
            destination: dict[str, Any] = {"host": service.name, "subset": subset}
            if port:
                destination["port"] = port
            destinations.append({"destination": destination, "weight": weight})
        route["route"] = destinations
        return obj


class TimeoutsRetriesForm(VirtualServiceWizard):
    timeout = duration_field("Request timeout", initial="10s", help_text="The whole request, retries included.")
    attempts = forms.IntegerField(
        label="Retry attempts",
        min_value=0,
        max_value=10,
        initial=3,
        help_text="0 turns retries off.",
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )
    per_try_timeout = duration_field("Per-try timeout", initial="2s")
    retry_on = forms.MultipleChoiceField(
        label="Retry on",
        choices=RETRY_ON,
        required=False,
        initial=["5xx", "reset", "connect-failure"],
        widget=forms.CheckboxSelectMultiple,
        help_text="Conditions that trigger a retry.",
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        timeout, per_try = cleaned.get("timeout"), cleaned.get("per_try_timeout")
        attempts = cleaned.get("attempts")
        if timeout and per_try and attempts and duration_seconds(per_try) > duration_seconds(timeout):
            self.add_error("per_try_timeout", "Longer than the request timeout: the first try would use it all.")
        if attempts and not cleaned.get("retry_on") and "retry_on" not in self.errors:
            self.add_error("retry_on", "Choose when to retry, or set the attempts to 0.")
        return cleaned

    def build(self) -> dict[str, Any]:
        obj = self.base()
        data = self.cleaned_data
        for route in self.http_routes(obj):
            if data["timeout"]:
                route["timeout"] = data["timeout"]
            else:
                route.pop("timeout", None)
            retries: dict[str, Any] = {"attempts": data["attempts"]}
            if data["attempts"]:
                if data["per_try_timeout"]:
                    retries["perTryTimeout"] = data["per_try_timeout"]
                retries["retryOn"] = ",".join(data["retry_on"])
            route["retries"] = retries
        return obj


class FaultInjectionForm(VirtualServiceWizard):
    delay = duration_field("Fixed delay", help_text="Leave empty for no delay.")
    delay_percentage = percentage_field("Requests delayed (%)", initial=10)
    abort_status = forms.IntegerField(
        label="Abort with HTTP status",
        required=False,
        min_value=200,
        max_value=599,
        help_text="Leave empty for no aborts.",
        widget=forms.NumberInput(attrs={"placeholder": "e.g. 503"}),
    )
    abort_percentage = percentage_field("Requests aborted (%)", initial=10)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        nothing = not cleaned.get("delay") and cleaned.get("abort_status") is None
        if nothing and not {"delay", "abort_status"} & set(self.errors):
            self.add_error(None, "Inject a delay, an abort or both.")
        for field in ("delay_percentage", "abort_percentage"):
            if field in cleaned and cleaned[field] is None:
                cleaned[field] = self.fields[field].initial
        return cleaned

    def build(self) -> dict[str, Any]:
        obj = self.base()
        data = self.cleaned_data
        fault: dict[str, Any] = {}
        if data["delay"]:
            fault["delay"] = {"fixedDelay": data["delay"], "percentage": {"value": float(data["delay_percentage"])}}
        if data["abort_status"] is not None:
            fault["abort"] = {
                "httpStatus": data["abort_status"],
                "percentage": {"value": float(data["abort_percentage"])},
            }
        for route in self.http_routes(obj):
            route["fault"] = fault
        return obj


# --- DestinationRule --------------------------------------------------------------------------


class CircuitBreakerForm(WizardForm):
    kind = PolicyKind.DESTINATION_RULE
    refresh_on_service = True

    max_connections = forms.IntegerField(label="Max TCP connections", min_value=1, initial=100)
    http1_max_pending_requests = forms.IntegerField(label="Max pending HTTP requests", min_value=1, initial=50)
    max_requests_per_connection = forms.IntegerField(
        label="Max requests per connection",
        min_value=1,
        initial=10,
        required=False,
        help_text="Empty: unlimited (keep-alive).",
    )
    consecutive_5xx_errors = forms.IntegerField(
        label="Eject after consecutive 5xx",
        min_value=1,
        max_value=1000,
        initial=5,
    )
    interval = duration_field("Analysis interval", required=True, initial="30s")
    base_ejection_time = duration_field("Base ejection time", required=True, initial="60s")
    max_ejection_percent = forms.IntegerField(label="Max ejected hosts (%)", min_value=0, max_value=100, initial=50)
    subsets_from_versions = forms.BooleanField(
        label="Define one subset per version",
        required=False,
        initial=True,
        help_text="When the service has no DestinationRule yet: subsets named after the pods' version labels.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        service = self.selected_service()
        existing = self.snapshot.destination_rule_for(service) if service else None
        if existing and not self.is_bound:
            self._initial_from((existing.get("spec") or {}).get("trafficPolicy") or {})

    def _initial_from(self, policy: dict[str, Any]) -> None:
        pool = policy.get("connectionPool") or {}
        outlier = policy.get("outlierDetection") or {}
        known = {
            "max_connections": (pool.get("tcp") or {}).get("maxConnections"),
            "http1_max_pending_requests": (pool.get("http") or {}).get("http1MaxPendingRequests"),
            "max_requests_per_connection": (pool.get("http") or {}).get("maxRequestsPerConnection"),
            "consecutive_5xx_errors": outlier.get("consecutive5xxErrors"),
            "interval": outlier.get("interval"),
            "base_ejection_time": outlier.get("baseEjectionTime"),
            "max_ejection_percent": outlier.get("maxEjectionPercent"),
        }
        for field, value in known.items():
            if value is not None and field not in self.initial:
                self.initial[field] = value

    def build(self) -> dict[str, Any]:
        service: LiveService = self.cleaned_data["service"]
        data = self.cleaned_data
        obj = None if data.get("name") else _based_on(self.snapshot.destination_rule_for(service))
        if obj is None:
            obj = _object(self.kind, self.object_name(service.name), service.namespace, {"host": service.name})
        spec = obj["spec"]
        policy = spec.setdefault("trafficPolicy", {})
        http_pool: dict[str, Any] = {"http1MaxPendingRequests": data["http1_max_pending_requests"]}
        if data["max_requests_per_connection"]:
            http_pool["maxRequestsPerConnection"] = data["max_requests_per_connection"]
        policy["connectionPool"] = {"tcp": {"maxConnections": data["max_connections"]}, "http": http_pool}
        policy["outlierDetection"] = {
            "consecutive5xxErrors": data["consecutive_5xx_errors"],
            "interval": data["interval"],
            "baseEjectionTime": data["base_ejection_time"],
            "maxEjectionPercent": data["max_ejection_percent"],
        }
        if not spec.get("subsets") and data["subsets_from_versions"] and service.versions:
            spec["subsets"] = [{"name": version, "labels": {"version": version}} for version in service.versions]
        return obj


# --- Security ---------------------------------------------------------------------------------


class WorkloadWizard(WizardForm):
    """Security policies select the service's pods through its label selector."""

    service_label = "Workload"
    service_help = "The pods behind this service (its label selector)."

    def clean_service(self) -> LiveService:
        service = super().clean_service()
        if not service.selector and self.snapshot.services:
            raise forms.ValidationError(f"{service.name} has no pod selector to target.")
        return service

    def selector(self, service: LiveService) -> dict[str, Any]:
        return {"matchLabels": service.selector_labels or {"app": service.name}}


class MtlsForm(WizardForm):
    kind = PolicyKind.PEER_AUTHENTICATION
    uses_service = False

    scope = forms.ChoiceField(label="Applies to", help_text="A whole namespace, or the pods of one service.")
    mode = forms.ChoiceField(
        label="mTLS mode",
        initial="STRICT",
        widget=forms.RadioSelect,
        choices=[
            ("STRICT", "STRICT: only mutual TLS is accepted"),
            ("PERMISSIVE", "PERMISSIVE: mutual TLS and plain text (during a migration)"),
            ("DISABLE", "DISABLE: plain text only"),
        ],
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        items = []
        for namespace in self.snapshot.namespaces:
            items.append((namespace, f"{namespace}/{NAMESPACE_WIDE}", f"Every workload in {namespace}"))
            items += [(namespace, s.key, s.name) for s in self.snapshot.services_in(namespace) if s.selector]
        self._set_choices("scope", _grouped(items))
        self.order_fields(["scope", "mode", "name"])

    def clean_scope(self) -> tuple[str, LiveService | None]:
        namespace, _, target = self.cleaned_data["scope"].partition("/")
        return namespace, None if target == NAMESPACE_WIDE else self.snapshot.service(self.cleaned_data["scope"])

    @property
    def namespace(self) -> str:
        return self.cleaned_data["scope"][0]

    def build(self) -> dict[str, Any]:
        namespace, service = self.cleaned_data["scope"]
        spec: dict[str, Any] = {}
        if service is not None:
            spec["selector"] = {"matchLabels": service.selector_labels}
        spec["mtls"] = {"mode": self.cleaned_data["mode"]}
        default = "default" if service is None else f"{service.name}-mtls"
        return _object(self.kind, self.object_name(default), namespace, spec)


class AccessForm(WorkloadWizard):
    kind = PolicyKind.AUTHORIZATION_POLICY

    action = forms.ChoiceField(
        label="Action",
        initial="ALLOW",
        widget=forms.RadioSelect,
        choices=[("ALLOW", "ALLOW these callers"), ("DENY", "DENY these callers")],
    )
    principals = forms.MultipleChoiceField(
        label="Calling workloads (service accounts)",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        help_text="Ctrl/Cmd-click to pick several.",
    )
    namespaces = forms.MultipleChoiceField(
        label="Or every workload of these namespaces",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    methods = forms.MultipleChoiceField(
        label="HTTP methods",
        required=False,
        choices=[(m, m) for m in HTTP_METHODS],
        widget=forms.CheckboxSelectMultiple,
        help_text="None: every method.",
    )
    paths = forms.CharField(
        label="Paths",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "/api/v1/*\n/healthz", "spellcheck": "false"}),
        help_text="One per line; exact, prefix (/api/*) or suffix (*.png). None: every path.",
    )

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        accounts = self.snapshot.service_accounts
        self._set_choices("principals", _grouped([(ns, principal(ns, sa), f"{ns}/{sa}") for ns, sa in accounts]))
        namespaces = sorted(set(self.snapshot.cluster_namespaces) | set(self.snapshot.namespaces))
        self._set_choices("namespaces", [(ns, ns) for ns in namespaces])

    def clean_paths(self) -> list[str]:
        return _paths(self.cleaned_data["paths"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        nobody = not cleaned.get("principals") and not cleaned.get("namespaces")
        if nobody and not {"principals", "namespaces"} & set(self.errors):
            self.add_error("principals", "Choose at least one caller: a rule without a source matches everyone.")
        return cleaned

    def build(self) -> dict[str, Any]:
        data = self.cleaned_data
        service: LiveService = data["service"]
        sources = []
        if data["principals"]:
            sources.append({"source": {"principals": data["principals"]}})
        if data["namespaces"]:
            sources.append({"source": {"namespaces": data["namespaces"]}})
        rule: dict[str, Any] = {"from": sources}
        operation: dict[str, Any] = {}
        if data["methods"]:
            operation["methods"] = data["methods"]
        if data["paths"]:
            operation["paths"] = data["paths"]
        if operation:
            rule["to"] = [{"operation": operation}]
        spec = {"selector": self.selector(service), "action": data["action"], "rules": [rule]}
        name = self.object_name(f"{service.name}-{data['action'].lower()}")
        return _object(self.kind, name, service.namespace, spec)


class JwtForm(WorkloadWizard):
    kind = PolicyKind.REQUEST_AUTHENTICATION

    issuer = forms.CharField(
        label="Issuer (iss)",
        max_length=500,
        widget=forms.TextInput(attrs={"placeholder": "https://auth.example.com", "spellcheck": "false"}),
    )
    jwks_uri = forms.URLField(
        label="JWKS URI",
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://auth.example.com/.well-known/jwks.json"}),
    )
    audiences = forms.CharField(
        label="Audiences (aud)",
        required=False,
        max_length=500,
        help_text="Comma-separated; empty: any audience.",
    )
    forward_original_token = forms.BooleanField(label="Forward the token to the workload", required=False)
    require_token = forms.BooleanField(
        label="Also require a valid token",
        required=False,
        initial=True,
        help_text="Adds an AuthorizationPolicy that denies requests without a request principal.",
    )
    require_paths = forms.CharField(
        label="…on these paths only",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "/account/*", "spellcheck": "false"}),
        help_text="One per line; empty: every path.",
    )

    def clean_jwks_uri(self) -> str:
        value = self.cleaned_data["jwks_uri"]
        if not value.startswith("https://"):
            raise forms.ValidationError("Keys must be fetched over https.")
        return value

    def clean_audiences(self) -> list[str]:
        return [a.strip() for a in self.cleaned_data["audiences"].split(",") if a.strip()]

    def clean_require_paths(self) -> list[str]:
        return _paths(self.cleaned_data["require_paths"])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "require_paths" in cleaned:
            cleaned["paths"] = cleaned["require_paths"]
        return cleaned

    def documents(self) -> list[dict[str, Any]]:
        documents = [self.build()]
        if self.cleaned_data["require_token"]:
            documents.append(self.build_requirement())
        return documents

    def build(self) -> dict[str, Any]:
        data = self.cleaned_data
        service: LiveService = data["service"]
        rule: dict[str, Any] = {"issuer": data["issuer"], "jwksUri": data["jwks_uri"]}
        if data["audiences"]:
            rule["audiences"] = data["audiences"]
        if data["forward_original_token"]:
            rule["forwardOriginalToken"] = True
        spec = {"selector": self.selector(service), "jwtRules": [rule]}
        return _object(self.kind, self.object_name(f"{service.name}-jwt"), service.namespace, spec)

    def build_requirement(self) -> dict[str, Any]:
        data = self.cleaned_data
        service: LiveService = data["service"]
        rule: dict[str, Any] = {"from": [{"source": {"notRequestPrincipals": ["*"]}}]}
        if data["paths"]:
            rule["to"] = [{"operation": {"paths": data["paths"]}}]
        spec = {"selector": self.selector(service), "action": "DENY", "rules": [rule]}
        return _object(PolicyKind.AUTHORIZATION_POLICY, f"{service.name}-require-jwt", service.namespace, spec)


def _paths(text: str) -> list[str]:
    paths = [line.strip() for line in text.splitlines() if line.strip()]
    for path in paths:
        if not (path.startswith("/") or path.startswith("*")) or " " in path:
            raise forms.ValidationError(f"{path!r} is not a path: start it with / (or * for a suffix match).")
    return paths


def _default_route(http: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The catch-all HTTP route: the last one without a match, where unmatched traffic goes."""
    return next((route for route in reversed(http) if isinstance(route, dict) and not route.get("match")), None)


# --- registry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wizard:
    slug: str
    title: str
    kind: str
    summary: str
    form_class: type[WizardForm]
    icon: str  # a Bootstrap-like glyph name, drawn by the template


WIZARDS: dict[str, Wizard] = {
    w.slug: w
    for w in (
        Wizard(
            "traffic-shift",
            "Traffic shift",
            PolicyKind.VIRTUAL_SERVICE,
            "Split a service's traffic between its versions by weight: canary, blue/green, rollback.",
            TrafficShiftForm,
            "shuffle",
        ),
        Wizard(
            "timeouts-retries",
            "Timeouts and retries",
            PolicyKind.VIRTUAL_SERVICE,
            "Bound how long callers wait and when the mesh retries a failed request.",
            TimeoutsRetriesForm,
            "clock",
        ),
        Wizard(
            "fault-injection",
            "Fault injection",
            PolicyKind.VIRTUAL_SERVICE,
            "Delay or abort a share of requests to test how callers cope.",
            FaultInjectionForm,
            "bolt",
        ),
        Wizard(
            "circuit-breaker",
            "Circuit breaker",
            PolicyKind.DESTINATION_RULE,
            "Cap connections and pending requests; eject hosts that keep failing.",
            CircuitBreakerForm,
            "shield",
        ),
        Wizard(
            "mtls",
            "Mutual TLS",
            PolicyKind.PEER_AUTHENTICATION,
            "Require (or allow) mutual TLS for a namespace or one workload.",
            MtlsForm,
            "lock",
        ),
        Wizard(
            "access",
            "Access control",
            PolicyKind.AUTHORIZATION_POLICY,
            "Allow or deny calls to a workload from given service accounts or namespaces.",
            AccessForm,
            "key",
        ),
        Wizard(
            "jwt",
            "End-user JWT",
            PolicyKind.REQUEST_AUTHENTICATION,
            "Validate end-user tokens from an issuer, and optionally require one.",
            JwtForm,
            "person",
        ),
    )
}


# --- skeletons for a new object ---------------------------------------------------------------


def skeleton(kind: str, *, namespace: str, service: LiveService | None = None) -> dict[str, Any]:
    """A minimal, schema-valid object of `kind` in `namespace`, about `service` when one is known."""
    host = service.name if service else "example"
    selector = {"matchLabels": (service.selector_labels if service and service.selector else {"app": host})}
    account = service.service_accounts[0] if service and service.service_accounts else "default"
    specs: dict[str, tuple[str, dict[str, Any]]] = {
        PolicyKind.VIRTUAL_SERVICE: (host, {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]}),
        PolicyKind.DESTINATION_RULE: (host, {"host": host}),
        PolicyKind.GATEWAY: (
            f"{namespace}-gateway",
            {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "hosts": [f"{namespace}.example.com"],
                    }
                ],
            },
        ),
        PolicyKind.SERVICE_ENTRY: (
            "external-api",
            {
                "hosts": ["api.example.com"],
                "location": "MESH_EXTERNAL",
                "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
                "resolution": "DNS",
            },
        ),
        PolicyKind.SIDECAR: ("default", {"egress": [{"hosts": ["./*", "istio-system/*"]}]}),
        PolicyKind.AUTHORIZATION_POLICY: (
            f"{host}-allow",
            {
                "selector": selector,
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"principals": [principal(namespace, account)]}}]}],
            },
        ),
        PolicyKind.PEER_AUTHENTICATION: ("default", {"mtls": {"mode": "STRICT"}}),
        PolicyKind.REQUEST_AUTHENTICATION: (
            f"{host}-jwt",
            {
                "selector": selector,
                "jwtRules": [
                    {
                        "issuer": "https://auth.example.com",
                        "jwksUri": "https://auth.example.com/.well-known/jwks.json",
                    }
                ],
            },
        ),
        PolicyKind.WORKLOAD_ENTRY: (
            f"{host}-vm-1",
            {
                "address": "10.0.0.10",
                "labels": {"app": host},
                "serviceAccount": account,
            },
        ),
        PolicyKind.WORKLOAD_GROUP: (
            f"{host}-vms",
            {
                "metadata": {"labels": {"app": host}},
                "template": {"serviceAccount": account},
            },
        ),
        PolicyKind.ENVOY_FILTER: (
            f"{host}-lua",
            {
                "workloadSelector": {"labels": selector["matchLabels"]},
                "configPatches": [
                    {
                        "applyTo": "HTTP_FILTER",
                        "match": {
                            "context": "SIDECAR_INBOUND",
                            "listener": {
                                "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager"}}
                            },
                        },
                        "patch": {
                            "operation": "INSERT_FIRST",
                            "value": {
                                "name": "envoy.filters.http.lua",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                                    "inlineCode": "function envoy_on_request(handle) end",
                                },
                            },
                        },
                    }
                ],
            },
        ),
        PolicyKind.PROXY_CONFIG: (f"{host}-proxy", {"selector": selector, "concurrency": 2}),
        PolicyKind.TELEMETRY: (
            f"{host}-telemetry",
            {
                "selector": selector,
                "accessLogging": [{"providers": [{"name": "envoy"}]}],
            },
        ),
        PolicyKind.WASM_PLUGIN: (
            f"{host}-wasm",
            {
                "selector": selector,
                "url": "oci://ghcr.io/example/plugin:1.0.0",
                "phase": "AUTHN",
            },
        ),
        PolicyKind.TRAFFIC_EXTENSION: (
            f"{host}-lua",
            {
                "selector": selector,
                "phase": "AUTHN",
                "lua": {"inlineCode": "function envoy_on_request(handle) end"},
            },
        ),
    }
    name, spec = specs[kind]
    return _object(kind, name, namespace, spec)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True) for doc in documents)

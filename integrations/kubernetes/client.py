"""Typed functions over the official client. Works unchanged against meshsim and a real cluster."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from integrations.kubernetes.exceptions import (
    AlreadyExists,
    Cause,
    Conflict,
    Invalid,
    KubernetesError,
    NotFound,
    Unauthorized,
    Unreachable,
)
from integrations.kubernetes.kinds import IstioKind, context_kind_info, kind_info

FIELD_MANAGER = "meshgate"
T = TypeVar("T")


@dataclass(frozen=True)
class ClusterConfig:
    """How to reach one cluster. Exactly one of: api_url (+token), kubeconfig_path/context, in_cluster."""

    api_url: str = ""
    token: str = ""
    ca_certificate: str = ""
    verify_tls: bool = True
    kubeconfig_path: str = ""
    kubeconfig_context: str = ""
    in_cluster: bool = False
    timeout_seconds: float = 10.0

    def describe(self) -> str:
        if self.in_cluster:
            return "in-cluster service account"
        if self.api_url:
            return self.api_url
        return f"kubeconfig {self.kubeconfig_path or '~/.kube/config'} context {self.kubeconfig_context or '(current)'}"


@functools.lru_cache(maxsize=32)
def _api_client(cfg: ClusterConfig) -> k8s.ApiClient:
    if cfg.in_cluster:
        configuration = k8s.Configuration()
        k8s_config.load_incluster_config(client_configuration=configuration)
    elif cfg.api_url:
        configuration = k8s.Configuration(host=cfg.api_url.rstrip("/"))
        if cfg.token:
            configuration.api_key = {"BearerToken": cfg.token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.verify_ssl = cfg.verify_tls
        if cfg.ca_certificate:
            with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as bundle:
                bundle.write(cfg.ca_certificate)
            configuration.ssl_ca_cert = bundle.name
    else:
        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config(
                config_file=cfg.kubeconfig_path or None,
                context=cfg.kubeconfig_context or None,
                client_configuration=configuration,
            )
        except (k8s_config.ConfigException, OSError) as exc:
            raise Unreachable(f"cannot load kubeconfig: {exc}") from exc
    configuration.retries = 1
    return k8s.ApiClient(configuration)


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _translate(exc: ApiException) -> KubernetesError:
    body = _status_body(exc)
    message = body.get("message") or exc.reason or "request failed"
    causes = [
        Cause(field=c.get("field", ""), reason=c.get("reason", ""), message=c.get("message", ""))
        for c in (body.get("details") or {}).get("causes") or []
    ]
    status = exc.status
    if status in (401, 403):
        return Unauthorized(message, status=status)
    if status == 404:
        return NotFound(message, status=status)
    if status == 409:
        cls = AlreadyExists if body.get("reason") == "AlreadyExists" else Conflict
        return cls(message, status=status, causes=causes)
    if status == 422:
        return Invalid(message, status=status, causes=causes)
    if status == 0 or status is None:
        return Unreachable(message, status=status)
    return KubernetesError(message, status=status, causes=causes)


@contextmanager
def _errors(cfg: ClusterConfig) -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise _translate(exc) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise Unreachable(f"cannot reach the Kubernetes API at {cfg.describe()}: {exc}") from exc


def _call(cfg: ClusterConfig, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    with _errors(cfg):
        return fn(*args, _request_timeout=cfg.timeout_seconds, **kwargs)


def _custom(cfg: ClusterConfig) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(_api_client(cfg))


def server_version(cfg: ClusterConfig) -> str:
    with _errors(cfg):
        info = k8s.VersionApi(_api_client(cfg)).get_code(_request_timeout=cfg.timeout_seconds)
    return info.git_version


def list_objects(
    cfg: ClusterConfig, kind: str, *, namespace: str | None = None, label_selector: str | None = None
) -> list[dict[str, Any]]:
    info = kind_info(kind)
    api = _custom(cfg)
    options = {"label_selector": label_selector} if label_selector else {}
    if namespace:
        result = _call(
            cfg, api.list_namespaced_custom_object, info.group, info.version, namespace, info.plural, **options
        )
    else:
        result = _call(cfg, api.list_cluster_custom_object, info.group, info.version, info.plural, **options)
    return [_with_type(item, info) for item in result.get("items", [])]


def get_object(cfg: ClusterConfig, kind: str, namespace: str, name: str) -> dict[str, Any]:
    info = kind_info(kind)
    obj = _call(cfg, _custom(cfg).get_namespaced_custom_object, info.group, info.version, namespace, info.plural, name)
    return _with_type(obj, info)


def apply_object(
    cfg: ClusterConfig,
    obj: dict[str, Any],
    *,
    dry_run: bool = False,
    force: bool = False,
    field_manager: str = FIELD_MANAGER,
) -> dict[str, Any]:
    """Server-side apply. A `metadata.resourceVersion` in `obj` is a precondition (409 if stale)."""
    info = kind_info(obj.get("kind", ""))
    metadata = obj.get("metadata") or {}
    # An apply that creates answers 201, which the generated client does not deserialize:
    # read the body ourselves.
    response = _call(
        cfg,
        _custom(cfg).patch_namespaced_custom_object,
        info.group,
        info.version,
        metadata.get("namespace", ""),
        info.plural,
        metadata.get("name", ""),
        {**obj, "apiVersion": info.api_version},
        field_manager=field_manager,
        force=force,
        dry_run="All" if dry_run else None,
        _content_type="application/apply-patch+yaml",
        _preload_content=False,
    )
    return _with_type(json.loads(response.data), info)


def patch_object_json(
    cfg: ClusterConfig,
    kind: str,
    namespace: str,
    name: str,
    operations: list[dict[str, Any]],
    *,
    dry_run: bool = False,
    field_manager: str = FIELD_MANAGER,
) -> dict[str, Any]:
    """A JSON patch (RFC 6902), e.g. `test` of `/metadata/resourceVersion` then `replace` of
    `/metadata/managedFields` (how kubectl moves client-side-apply ownership to its apply manager)."""
    info = kind_info(kind)
    response = _call(
        cfg,
        _custom(cfg).patch_namespaced_custom_object,
        info.group,
        info.version,
        namespace,
        info.plural,
        name,
        operations,
        field_manager=field_manager,
        dry_run="All" if dry_run else None,
        _content_type="application/json-patch+json",
        _preload_content=False,
    )
    return _with_type(json.loads(response.data), info)


def delete_object(
    cfg: ClusterConfig,
    kind: str,
    namespace: str,
    name: str,
    *,
    dry_run: bool = False,
    resource_version: str | None = None,
) -> None:
    info = kind_info(kind)
    body = k8s.V1DeleteOptions(
        dry_run=["All"] if dry_run else None,
        preconditions=k8s.V1Preconditions(resource_version=resource_version) if resource_version else None,
    )
    _call(
        cfg,
        _custom(cfg).delete_namespaced_custom_object,
        info.group,
        info.version,
        namespace,
        info.plural,
        name,
        body=body,
    )


def read_crd_schema(cfg: ClusterConfig, kind: str, version: str | None = None) -> dict[str, Any]:
    """The openAPIV3Schema the cluster serves for one version of the kind, plus resourceVersion for caching.

    Without ``version``: the kind's default version, NotFound when it has no schema. With one:
    also ``served`` (False when the CRD does not serve that version; ``schema`` is then empty) and
    ``servedVersions``, the versions it does serve.
    """
    info = kind_info(kind)
    api = k8s.ApiextensionsV1Api(_api_client(cfg))
    with _errors(cfg):
        crd = api.read_custom_resource_definition(info.crd_name, _request_timeout=cfg.timeout_seconds)
    wanted = version or info.version
    served = [entry.name for entry in crd.spec.versions if entry.served]
    for entry in crd.spec.versions:
        if entry.name == wanted and entry.served and entry.schema and entry.schema.open_apiv3_schema:
            schema = api.api_client.sanitize_for_serialization(entry.schema.open_apiv3_schema)
            return {
                "resourceVersion": crd.metadata.resource_version,
                "schema": schema,
                "served": True,
                "servedVersions": served,
                "version": wanted,
            }
    if version is None:
        raise NotFound(f"{info.crd_name} serves no schema for version {info.version}", status=404)
    return {
        "resourceVersion": crd.metadata.resource_version,
        "schema": {},
        "served": False,
        "servedVersions": served,
        "version": wanted,
    }


def list_namespaces(cfg: ClusterConfig) -> list[dict[str, Any]]:
    api = k8s.CoreV1Api(_api_client(cfg))
    result = _call(cfg, api.list_namespace)
    return [api.api_client.sanitize_for_serialization(item) for item in result.items]


def list_services(cfg: ClusterConfig, *, namespace: str | None = None) -> list[dict[str, Any]]:
    api = k8s.CoreV1Api(_api_client(cfg))
    if namespace:
        result = _call(cfg, api.list_namespaced_service, namespace)
    else:
        result = _call(cfg, api.list_service_for_all_namespaces)
    return [api.api_client.sanitize_for_serialization(item) for item in result.items]


def list_pods(
    cfg: ClusterConfig, *, namespace: str | None = None, label_selector: str | None = None
) -> list[dict[str, Any]]:
    api = k8s.CoreV1Api(_api_client(cfg))
    options = {"label_selector": label_selector} if label_selector else {}
    if namespace:
        result = _call(cfg, api.list_namespaced_pod, namespace, **options)
    else:
        result = _call(cfg, api.list_pod_for_all_namespaces, **options)
    return [api.api_client.sanitize_for_serialization(item) for item in result.items]


def list_context_objects(cfg: ClusterConfig, kind: str) -> list[dict[str, Any]]:
    """Every object of a read-only context kind (Gateway API: Gateway, HTTPRoute, ...), all namespaces."""
    info = context_kind_info(kind)
    result = _call(cfg, _custom(cfg).list_cluster_custom_object, info.group, info.version, info.plural)
    return [_with_type(item, info) for item in result.get("items", [])]


def list_deployments(cfg: ClusterConfig, *, namespace: str | None = None) -> list[dict[str, Any]]:
    api = k8s.AppsV1Api(_api_client(cfg))
    if namespace:
        result = _call(cfg, api.list_namespaced_deployment, namespace)
    else:
        result = _call(cfg, api.list_deployment_for_all_namespaces)
    return [api.api_client.sanitize_for_serialization(item) for item in result.items]


def list_nodes(cfg: ClusterConfig) -> list[dict[str, Any]]:
    api = k8s.CoreV1Api(_api_client(cfg))
    result = _call(cfg, api.list_node)
    return [api.api_client.sanitize_for_serialization(item) for item in result.items]


def get_config_map(cfg: ClusterConfig, namespace: str, name: str) -> dict[str, Any]:
    """One ConfigMap (e.g. Istio's mesh config `istio` in istio-system). Raises NotFound."""
    api = k8s.CoreV1Api(_api_client(cfg))
    return api.api_client.sanitize_for_serialization(_call(cfg, api.read_namespaced_config_map, name, namespace))


# A Table of Secrets whose rows carry the objects' metadata only: the API server answers the name, type
# and number of keys of each Secret, never its data. Meshgate reads no Secret's data.
SECRET_METADATA_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io"


@dataclass(frozen=True)
class SecretMetadata:
    namespace: str
    name: str
    type: str
    labels: dict[str, str]
    annotations: dict[str, str]


def list_secret_metadata(cfg: ClusterConfig, *, namespace: str | None = None) -> list[SecretMetadata]:
    """Name, namespace, type, labels and annotations of every Secret: a server-side Table with
    `includeObject=Metadata`, so the Secrets' data never reaches Meshgate."""
    api_client = _api_client(cfg)
    path = f"/api/v1/namespaces/{namespace}/secrets" if namespace else "/api/v1/secrets"
    response = _call(
        cfg,
        api_client.call_api,
        path,
        "GET",
        query_params=[("includeObject", "Metadata")],
        header_params={"Accept": SECRET_METADATA_ACCEPT},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    table = json.loads(response.data)
    if not isinstance(table, dict) or table.get("kind") != "Table":
        raise KubernetesError("the API server answered no Table for the Secrets' metadata", status=None)
    columns = [str(column.get("name", "")).lower() for column in table.get("columnDefinitions") or []]
    type_column = columns.index("type") if "type" in columns else None
    found = []
    for row in table.get("rows") or []:
        meta = (row.get("object") or {}).get("metadata") or {}
        cells = row.get("cells") or []
        secret_type = cells[type_column] if type_column is not None and type_column < len(cells) else ""
        found.append(
            SecretMetadata(
                namespace=meta.get("namespace", ""),
                name=meta.get("name", ""),
                type=str(secret_type or ""),
                labels=dict(meta.get("labels") or {}),
                annotations=dict(meta.get("annotations") or {}),
            )
        )
    return found


def _with_type(obj: dict[str, Any], info: IstioKind) -> dict[str, Any]:
    """List items carry no apiVersion/kind in some servers' answers; fill them in."""
    obj.setdefault("apiVersion", info.api_version)
    obj.setdefault("kind", info.kind)
    return obj

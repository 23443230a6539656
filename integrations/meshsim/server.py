"""HTTP layer: routing of Kubernetes API paths, admin endpoints, auth and faults."""

from __future__ import annotations

import json
import socket
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import discovery, errors, tables
from .api import APPLY_PATCH, FIELD_VALIDATIONS, Result, WriteOptions
from .cluster import Cluster
from .errors import REASONS_BY_CODE, ApiError
from .faults import FaultRule, FaultSpecError, request_facts
from .resources import ResourceType
from .traffic import TrafficModel, TrafficSpecError
from .yamlio import load_document

ADMIN_PREFIX = "/meshsim/"
METRICS_PATH = "/metrics"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OBJECT_TYPES = ["application/json", "application/yaml"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "application/json").split(";")[0].strip().lower()


@dataclass
class Response:
    code: int
    body: Any  # JSON-encoded, except bytes (sent as they are, with ``content_type``)
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    # A watch: JSON events, one a line, sent with chunked transfer encoding as they happen.
    stream: Iterator[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Target:
    """What a resource path addresses."""

    resource: ResourceType
    version: str
    namespace: str | None
    name: str | None
    subresource: str


def _from_result(result: Result) -> Response:
    warnings = [("Warning", f"299 - {json.dumps(text)}") for text in result.warnings]
    return Response(result.code, result.body, warnings)


def _default_manager(user_agent: str) -> str:
    """Like kube: the User-Agent up to its first '/' names the manager of Update writes."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


class App:
    """Maps requests to the cluster; every failure becomes a ``kind: Status`` body."""

    def __init__(self, cluster: Cluster, token: str | None = None, traffic: TrafficModel | None = None) -> None:
        self.cluster = cluster
        self.token = token
        self.traffic = traffic if traffic is not None else TrafficModel(cluster)
        self.server_address = ""

    def handle(self, request: Request) -> Response:
        try:
            if request.path == METRICS_PATH:  # scraped by Prometheus: no token needed
                return self._metrics(request)
            if request.path != "/meshsim/healthz" and not self._authorized(request):
                raise errors.unauthorized()
            if request.path.startswith(ADMIN_PREFIX):
                return self._admin(request)
            rule = self._inject_fault(request)
            if rule is None or not rule.applied:
                return self._kube(request)
            # The request takes effect; only its answer is the fault's (after the delay).
            try:
                answer = self._kube(request)
            except ApiError as exc:
                answer = Response(exc.code, exc.status())
            return self._fault_answer(rule, answer)
        except ApiError as exc:
            return Response(exc.code, exc.status())
        except Exception as exc:  # noqa: BLE001 - the server must answer even when a handler has a bug
            traceback.print_exc(file=sys.stderr)
            error = ApiError(500, "InternalError", f"Internal error occurred: {exc}")
            return Response(500, error.status())

    def _authorized(self, request: Request) -> bool:
        return self.token is None or request.headers.get("authorization") == f"Bearer {self.token}"

    def _inject_fault(self, request: Request) -> FaultRule | None:
        """The matching fault rule; one that is not `applied` delays and/or fails the request here."""
        facts = request_facts(request.method, request.path, request.query, request.content_type)
        rule = self.cluster.faults.take(request.method, request.path, facts)
        if rule is None or rule.applied:
            return rule
        self._fault_answer(rule, None)
        return rule

    def _fault_answer(self, rule: FaultRule, answer: Response | None) -> Response:
        """Sleeps the rule's delay, then raises its error; without a status, the request's own answer."""
        if rule.delay_ms:
            time.sleep(rule.delay_ms / 1000)
        if rule.status is None:
            return answer if answer is not None else Response(200, {})
        reason = REASONS_BY_CODE.get(rule.status, "InternalError")
        raise ApiError(rule.status, reason, f"meshsim injected fault {rule.id}: {reason}")

    # admin ----------------------------------------------------------------

    def _admin(self, request: Request) -> Response:
        cluster = self.cluster
        match (request.method, request.path.removeprefix(ADMIN_PREFIX).rstrip("/")):
            case ("GET", "healthz"):
                return Response(200, {"status": "ok", "name": cluster.config.name})
            case ("GET", "state"):
                return Response(200, cluster.objects())
            case ("POST", "save"):
                try:
                    return Response(200, {"saved": str(cluster.save())})
                except ValueError as exc:
                    raise errors.bad_request(str(exc)) from exc
            case ("POST", "reset"):
                objects = cluster.reset()
                self.traffic.reset()
                return Response(200, {"objects": objects})
            case ("GET", "faults"):
                return Response(200, {"faults": cluster.faults.rules()})
            case ("POST", "faults"):
                try:
                    rule = cluster.faults.add(self._json_body(request))
                except FaultSpecError as exc:
                    raise errors.bad_request(str(exc)) from exc
                return Response(201, rule.to_dict())
            case ("DELETE", "faults"):
                cluster.faults.clear()
                return Response(200, {"faults": []})
            case (_, "healthz" | "state" | "save" | "reset" | "faults"):
                raise errors.method_not_allowed()
            case (_, path) if path == "traffic" or path.startswith("traffic/"):
                return self._traffic(request, path.removeprefix("traffic").strip("/"))
        raise errors.unknown_path()

    # traffic model (see traffic.py) -----------------------------------------

    def _metrics(self, request: Request) -> Response:
        if request.method != "GET":
            raise errors.method_not_allowed()
        return Response(200, self.traffic.render_metrics(), content_type=METRICS_TYPE)

    def _traffic(self, request: Request, path: str) -> Response:
        traffic = self.traffic
        try:
            match (request.method, path):
                case ("GET", ""):
                    return Response(200, traffic.summary())
                case ("POST", "advance"):
                    body = self._json_body(request) or {}
                    return Response(
                        200,
                        traffic.advance(body.get("seconds") if isinstance(body, dict) else None),
                    )
                case ("POST", "reset"):
                    traffic.reset()
                    return Response(200, traffic.summary())
                case ("POST", "rates"):
                    return Response(200, traffic.set_rate(self._json_body(request)))
                case ("GET", "faults"):
                    return Response(200, {"faults": traffic.faults()})
                case ("POST", "faults"):
                    return Response(201, traffic.add_fault(self._json_body(request)))
                case ("DELETE", "faults"):
                    traffic.clear_faults()
                    return Response(200, {"faults": []})
                case ("DELETE", fault) if fault.startswith("faults/") and fault[7:].isdigit():
                    if not traffic.remove_fault(int(fault[7:])):
                        raise ApiError(404, "NotFound", f"traffic fault {fault[7:]} not found")
                    return Response(200, {"faults": traffic.faults()})
                case (_, "" | "advance" | "reset" | "rates" | "faults"):
                    raise errors.method_not_allowed()
        except TrafficSpecError as exc:
            raise errors.bad_request(str(exc)) from exc
        raise errors.unknown_path()

    # kubernetes -----------------------------------------------------------

    def _kube(self, request: Request) -> Response:
        segments = [segment for segment in request.path.split("/") if segment]
        registry = self.cluster.registry
        match segments:
            case ["version"]:
                return self._discovery(request, discovery.KUBERNETES_VERSION)
            case ["api"]:
                return self._discovery(request, discovery.api_versions(self.server_address))
            case ["api", "v1"]:
                return self._discovery(request, discovery.resource_list(registry, "", "v1"))
            case ["apis"]:
                return self._discovery(request, discovery.api_group_list(registry))
            case ["apis", group]:
                return self._discovery(request, discovery.api_group(registry, group))
            case ["apis", group, version]:
                return self._discovery(request, discovery.resource_list(registry, group, version))
            case ["api", version, *rest] if rest:
                return self._resource(request, self._target("", version, rest))
            case ["apis", group, version, *rest] if rest:
                return self._resource(request, self._target(group, version, rest))
        raise errors.unknown_path()

    def _discovery(self, request: Request, document: dict[str, Any] | None) -> Response:
        if document is None:
            raise errors.unknown_path()
        if request.method != "GET":
            raise errors.method_not_allowed()
        return Response(200, document)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        registry = self.cluster.registry
        namespace: str | None = None
        resource = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            resource = registry.lookup(group, version, rest[2])
            if resource is not None and resource.namespaced:
                namespace, tail = rest[1], rest[3:]
            else:
                resource = None
        if resource is None:
            resource, tail = registry.lookup(group, version, rest[0]), rest[1:]
            if resource is None or (resource.namespaced and tail):
                raise errors.unknown_path()
        if len(tail) > 2 or (len(tail) == 2 and (tail[1] != "status" or not resource.has_status)):
            raise errors.unknown_path()
        name = tail[0] if tail else None
        return Target(resource, version, namespace, name, tail[1] if len(tail) == 2 else "")

    def _resource(self, request: Request, target: Target) -> Response:
        resource, method = target.resource, request.method
        if resource.read_only and method != "GET":
            raise errors.method_not_allowed()
        if target.name is None:
            return self._collection(request, target)
        api, ns = self.cluster.api, target.namespace or ""
        if method == "GET":
            obj = api.get(resource, target.version, ns, target.name)
            form = tables.requested_form(request.headers.get("accept", ""))
            if form == "Table":
                return Response(200, tables.table(resource, [obj], {}, request.query.get("includeObject")))
            return Response(200, tables.partial(obj) if form == "PartialObjectMetadata" else obj)
        if method == "PUT":
            body = self._object_body(request)
            options = self._write_options(request, target)
            result = api.replace(resource, target.version, ns, target.name, body, options)
        elif method == "PATCH":
            options = self._write_options(request, target)
            result = api.patch(
                resource,
                target.version,
                ns,
                target.name,
                request.content_type,
                request.body,
                options,
            )
        elif method == "DELETE" and not target.subresource:
            delete_options = self._json_body(request) or {}
            if not isinstance(delete_options, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            options = self._write_options(request, target, delete_options.get("dryRun"))
            preconditions = delete_options.get("preconditions") or {}
            result = api.delete(resource, target.version, ns, target.name, options, preconditions)
        else:
            raise errors.method_not_allowed()
        return _from_result(result)

    def _collection(self, request: Request, target: Target) -> Response:
        resource, api = target.resource, self.cluster.api
        all_namespaces = resource.namespaced and target.namespace is None
        if request.method == "GET":
            if request.query.get("watch", "").lower() in ("true", "1"):
                events = api.watch(resource, target.version, target.namespace, request.query)
                return Response(200, None, stream=events)
            listing = api.list_collection(resource, target.version, target.namespace, request.query)
            form = tables.requested_form(request.headers.get("accept", ""))
            if form == "Table":
                include = request.query.get("includeObject")
                return Response(200, tables.table(resource, listing["items"], listing["metadata"], include))
            if form in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                return Response(200, tables.partial_list(listing))
            return Response(200, listing)
        if request.method == "POST" and not all_namespaces:
            body = self._object_body(request)
            options = self._write_options(request, target)
            return _from_result(api.create(resource, target.version, target.namespace or "", body, options))
        raise errors.method_not_allowed()

    def _write_options(self, request: Request, target: Target, body_dry_run: list[str] | None = None) -> WriteOptions:
        query = request.query
        dry_run = [query["dryRun"]] if "dryRun" in query else list(body_dry_run or [])
        if any(value != "All" for value in dry_run):
            raise errors.bad_request(f'dryRun: Unsupported value: {dry_run}: supported values: "All"')
        validation = query.get("fieldValidation") or "Warn"
        if validation not in FIELD_VALIDATIONS:
            raise errors.bad_request(
                f'fieldValidation: Unsupported value: "{validation}": supported values: '
                + ", ".join(f'"{value}"' for value in FIELD_VALIDATIONS)
            )
        manager = query.get("fieldManager", "")
        if not manager and request.content_type != APPLY_PATCH:
            manager = _default_manager(request.headers.get("user-agent", ""))
        return WriteOptions(
            field_manager=manager,
            dry_run=bool(dry_run),
            field_validation=validation,
            force=query.get("force", "").lower() in ("true", "1"),
            subresource=target.subresource,
        )

    def _object_body(self, request: Request) -> Any:
        if request.content_type not in OBJECT_TYPES:
            raise errors.unsupported_media_type(request.content_type, OBJECT_TYPES)
        if not request.body.strip():
            raise errors.bad_request("the request body is empty")
        return self._json_body(request)

    def _json_body(self, request: Request) -> Any:
        if not request.body.strip():
            return None
        try:
            if request.content_type == "application/yaml":
                return load_document(request.body)
            return json.loads(request.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"couldn't decode the request body: {exc}") from exc


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "meshsim"
    # Headers and body are two writes on a kept-alive connection: without TCP_NODELAY, Nagle's
    # algorithm holds the body until the client's delayed ACK (about 40 ms per request).
    disable_nagle_algorithm = True
    server: MeshsimServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        response = self.server.app.handle(Request(self.command, url.path, query, headers, body))
        if response.stream is not None:
            self._stream(response.stream)
            return
        if isinstance(response.body, bytes):
            payload = response.body
        else:
            payload = json.dumps(response.body).encode()
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            for event in events:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except ApiError as exc:  # raised before the first event: bad query
            line = json.dumps({"type": "ERROR", "object": exc.status()}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(line), line))
        finally:
            getattr(events, "close", lambda: None)()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class MeshsimServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one cluster."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App, verbose: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        self.app = app
        self.verbose = verbose
        host, port = self.socket.getsockname()[:2]
        app.server_address = f"{host}:{port}"

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

"""One simulated cluster: CRDs, store, API semantics, seeds, faults and persistence."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .api import Api, Result, WriteOptions, now
from .crds import load_crds
from .errors import ApiError
from .faults import FaultInjector
from .resources import CORE_TYPES, CRDS, NAMESPACES, Registry, crd_resource_type
from .store import DebouncedSaver, Obj, Store, load_state, save_state
from .yamlio import load_documents

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SYSTEM_MANAGER = "kube-apiserver"
SEED_MANAGER = "kubectl-client-side-apply"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class SeedError(ValueError):
    """A seed file could not be read or one of its objects was rejected."""


@dataclass
class ClusterConfig:
    name: str
    crd_file: Path
    seeds: list[Path] = field(default_factory=list)
    gateway_api_crd_file: Path | None = None
    state_file: Path | None = None


def _crd_object(crd: Obj, created: str) -> Obj:
    """A CRD as the apiserver returns it: with uid, resourceVersion and Established status."""
    obj = copy.deepcopy(crd)
    meta = obj.setdefault("metadata", {})
    meta["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"meshsim/crd/{meta['name']}"))
    meta["creationTimestamp"] = created
    meta["generation"] = 1
    spec = obj["spec"]
    accepted = {"listKind": f"{spec['names']['kind']}List", **spec["names"]}
    conditions = [
        ("NamesAccepted", "NoConflicts", "no conflicts found"),
        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ]
    obj["status"] = {
        "acceptedNames": accepted,
        "conditions": [
            {
                "type": kind,
                "status": "True",
                "lastTransitionTime": created,
                "reason": reason,
                "message": message,
            }
            for kind, reason, message in conditions
        ],
        "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
    }
    return obj


def _read_seed_documents(path: Path) -> list[Obj]:
    try:
        documents = load_documents(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SeedError(f"cannot read seed file {path}: {exc}") from exc
    for index, doc in enumerate(documents):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
            raise SeedError(f"{path}: document {index} is not a Kubernetes object")
    return documents


class Cluster:
    """Everything behind one meshsim server, independent of HTTP."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self._crds = load_crds(config.crd_file)
        if config.gateway_api_crd_file is not None:
            self._crds += load_crds(config.gateway_api_crd_file)
        self.registry = Registry([*CORE_TYPES, CRDS, *map(crd_resource_type, self._crds)])
        self.store = Store()
        self.api = Api(self.store)
        self.faults = FaultInjector()
        self._seed_documents = [(path, doc) for path in config.seeds for doc in _read_seed_documents(path)]
        self._save_lock = threading.Lock()
        self._saver: DebouncedSaver | None = None

    def start(self) -> None:
        """Load the saved state if there is one, else the seeds; then persist writes."""
        state_file = self.config.state_file
        if state_file is not None and state_file.is_file():
            self.load(state_file)
        else:
            self.reset()
        if state_file is not None:
            self._saver = DebouncedSaver(self.save)
            self.store.subscribe(self._saver)

    def stop(self) -> None:
        """Flush pending state to the state file."""
        if self._saver is not None:
            self._saver.flush()

    def reset(self) -> int:
        """Back to system objects plus seeds; clears faults. Returns the object count."""
        with self.store.lock:
            self.store.clear()
            self._install_crds()
            for name in SYSTEM_NAMESPACES:
                namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                self._create(namespace, SYSTEM_MANAGER)
            self._load_seeds()
            self.faults.clear()
            return len(self.objects())

    def objects(self) -> list[Obj]:
        """Every stored object except the CRDs (which come from the CRD file)."""
        return [obj for key, obj in self.store.items() if key != CRDS.key]

    def save(self) -> Path:
        """Write the state file atomically; raises ValueError without one."""
        if self.config.state_file is None:
            raise ValueError("meshsim was started without --state-file")
        with self._save_lock:
            with self.store.lock:
                revision, objects = self.store.revision, self.objects()
            save_state(self.config.state_file, self.config.name, revision, objects)
        return self.config.state_file

    def load(self, path: Path) -> None:
        revision, objects = load_state(path)
        items = []
        for obj in objects:
            resource = self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
            if resource is None:
                raise ValueError(f"{path}: unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
            items.append((resource.key, obj))
        with self.store.lock:
            self.store.clear()
            self._install_crds()
            self.store.restore(items, revision)

    def _install_crds(self) -> None:
        created = now()
        for crd in self._crds:
            self.store.put(CRDS.key, _crd_object(crd, created))

    def _load_seeds(self) -> None:
        namespaces_first = sorted(self._seed_documents, key=lambda item: item[1].get("kind") != NAMESPACES.kind)
        for path, doc in namespaces_first:
            try:
                self._create(doc, SEED_MANAGER)
            except ApiError as exc:
                raise SeedError(f"{path}: {doc['kind']} rejected: {exc.message}") from exc

    def _create(self, doc: Obj, manager: str) -> Result:
        resource = self.registry.by_kind(doc["apiVersion"], doc["kind"])
        if resource is None or resource.read_only:
            raise SeedError(f"unsupported kind {doc['apiVersion']}/{doc['kind']}")
        version = doc["apiVersion"].rpartition("/")[2]
        namespace = (doc.get("metadata") or {}).get("namespace") or "default"
        if manager == SEED_MANAGER and resource.custom:
            doc = with_last_applied(doc, namespace)
        options = WriteOptions(field_manager=manager, field_validation="Strict")
        return self.api.create(resource, version, namespace, doc, options)


def with_last_applied(doc: Obj, namespace: str) -> Obj:
    """The object as ``kubectl apply`` (client-side) creates it: with the last-applied annotation."""
    applied = copy.deepcopy(doc)
    applied.setdefault("metadata", {}).setdefault("namespace", namespace)
    created = copy.deepcopy(applied)
    annotations = created["metadata"].setdefault("annotations", {})
    annotations[LAST_APPLIED] = json.dumps(applied, separators=(",", ":"), sort_keys=True) + "\n"
    return created

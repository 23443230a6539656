"""Meshsim: a simulated Kubernetes API server serving the Istio CRDs.

Pure stdlib + PyYAML. Run it with ``python -m integrations.meshsim`` (see
``__main__.py``); embed it with ``Cluster`` + ``App`` + ``MeshsimServer``.

Modules: ``crds`` (finding the CRD file), ``resources`` (resource types),
``schema`` / ``objectmeta`` (validation), ``store`` (objects, resourceVersion,
persistence), ``fieldmanager`` (server-side apply), ``api`` (REST semantics),
``discovery``, ``faults``, ``cluster`` (composition) and ``server`` (HTTP).
"""

from .cluster import Cluster, ClusterConfig
from .server import App, MeshsimServer

__all__ = ["App", "Cluster", "ClusterConfig", "MeshsimServer"]

"""Locating and loading the Istio and Kubernetes Gateway API CustomResourceDefinitions.

The CRD files are never copied into the repository. The Istio one is found, in order:

1. an explicit path (``--crds``) or the ``MESHSIM_CRD_FILE`` environment variable;
2. the Istio reference file ``<repo_root>/../shared/reference/istio/crd-all.gen.yaml``;
3. a cached download of the pinned Istio release (``ISTIO_VERSION``).

The Gateway API one (``standard-install.yaml``) likewise: ``--gateway-api-crds`` or
``MESHSIM_GATEWAY_API_CRD_FILE``, then ``../shared/reference/gateway-api/standard-install.yaml``,
then a cached download of the pinned release (``GATEWAY_API_VERSION``). ``--gateway-api-crds none``
starts a cluster without the Gateway API.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

from .yamlio import load_documents

ISTIO_VERSION = "1.28.0"
CRD_URL = f"https://raw.githubusercontent.com/istio/istio/{ISTIO_VERSION}/manifests/charts/base/files/crd-all.gen.yaml"
ENV_VAR = "MESHSIM_CRD_FILE"
REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE_FILE = REPO_ROOT.parent / "shared" / "reference" / "istio" / "crd-all.gen.yaml"
DOWNLOAD_TIMEOUT_S = 30

GATEWAY_API_VERSION = "v1.6.1"
GATEWAY_API_URL = (
    f"https://github.com/kubernetes-sigs/gateway-api/releases/download/{GATEWAY_API_VERSION}/standard-install.yaml"
)
GATEWAY_API_ENV_VAR = "MESHSIM_GATEWAY_API_CRD_FILE"
GATEWAY_API_REFERENCE_FILE = REPO_ROOT.parent / "shared" / "reference" / "gateway-api" / "standard-install.yaml"


class CrdFileError(RuntimeError):
    """The CRD file could not be found, downloaded or read."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meshgate"


def locate_crd_file(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The CRD file to load; downloads the pinned release once if nothing local exists."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise CrdFileError(f"CRD file {path} does not exist.\n{_options()}")
        return path
    if REFERENCE_FILE.is_file():
        return REFERENCE_FILE
    cached = cache_dir() / f"istio-{ISTIO_VERSION}-crd-all.gen.yaml"
    if not cached.is_file():
        _download(CRD_URL, cached)
    return cached


def locate_gateway_api_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The Gateway API CRD file to load (None: "none" was asked for); downloads it once if needed."""
    chosen = explicit or os.environ.get(GATEWAY_API_ENV_VAR)
    if chosen and str(chosen).lower() == "none":
        return None
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            raise CrdFileError(f"Gateway API CRD file {path} does not exist")
        return path
    if GATEWAY_API_REFERENCE_FILE.is_file():
        return GATEWAY_API_REFERENCE_FILE
    cached = cache_dir() / f"gateway-api-{GATEWAY_API_VERSION}-standard-install.yaml"
    if not cached.is_file():
        _download(GATEWAY_API_URL, cached)
    return cached


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as exc:
        message = f"could not download the Istio CRDs from {url}: {exc}\n{_options()}"
        raise CrdFileError(message) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)


def _options() -> str:
    return (
        "meshsim needs the Istio CRD file (crd-all.gen.yaml). Provide it in one of three ways:\n"
        f"  1. pass --crds PATH or set {ENV_VAR}=PATH;\n"
        f"  2. place the Istio reference file at {REFERENCE_FILE};\n"
        f"  3. allow a one-time download of Istio {ISTIO_VERSION} from {CRD_URL}\n"
        f"     into {cache_dir()}."
    )


def load_crds(path: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinition documents of a CRD file."""
    try:
        documents = load_documents(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CrdFileError(f"could not read CRD file {path}: {exc}") from exc
    crds = [doc for doc in documents if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise CrdFileError(f"{path} contains no CustomResourceDefinition")
    return crds

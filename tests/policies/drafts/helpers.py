"""Manifests, archives and a fixture shared by the draft, bundle and validate tests."""

import io
import tarfile
import zipfile

import pytest

from policies.models import AuditEvent, Draft

# The seeded staging cluster has Service reviews (v1, v2, v3 pods) in bookinfo.
REVIEWS_V2 = """\
# Send everything to reviews, with a timeout (comment kept as written).
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    timeout: 5s
"""

RATINGS_NEW = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
  namespace: bookinfo
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
"""

# Routes to subsets no DestinationRule defines: a cross-resource error that must not block saving.
REVIEWS_MISSING_SUBSET = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v9
"""


def destination_rule(name: str, namespace: str = "bookinfo") -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: {name}
  namespace: {namespace}
spec:
  host: {name}
"""


def virtual_service_text(name: str, namespace: str = "bookinfo", host: str | None = None) -> str:
    host = host or name
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
  namespace: {namespace}
spec:
  hosts:
  - {host}
  http:
  - route:
    - destination:
        host: {host}
"""


def tar_gz(members: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture
def cluster_org(org, meshsim):
    """The `org` fixture with its staging environment pointing at the simulated staging cluster."""
    org.env.api_url = meshsim.url
    org.env.save(update_fields=["api_url"])
    return org


def stored_nothing() -> bool:
    return not Draft.objects.exists() and not AuditEvent.objects.filter(action__startswith="draft.").exists()

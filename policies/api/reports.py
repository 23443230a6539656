"""Renderers that turn a validation answer into what CI systems read: `?format=sarif` (SARIF
2.1.0, for code scanning) and `?format=junit` (JUnit XML, for test reports). The same request
with `Accept: application/sarif+json` or `application/xml` works too. Errors of the request itself
(a bad environment, an unreadable upload) are always answered as JSON."""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer

from policies.validation.reports import junit_xml, sarif_log


def _version() -> str:
    try:
        return metadata.version("meshgate")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0"


def _is_report(data: Any) -> bool:
    return isinstance(data, dict) and "findings" in data and "documents" in data


class SarifRenderer(BaseRenderer):
    media_type = "application/sarif+json"
    format = "sarif"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if not _is_report(data):
            return JSONRenderer().render(data)
        request = (renderer_context or {}).get("request")
        base = request.build_absolute_uri("/").rstrip("/") if request is not None else ""
        return json.dumps(sarif_log(data["findings"], docs_base=base, version=_version()), indent=2).encode()


class JUnitRenderer(BaseRenderer):
    media_type = "application/xml"
    format = "junit"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        if not _is_report(data):
            return JSONRenderer().render(data)
        return junit_xml(data["findings"], documents=data["documents"]).encode()


REPORT_RENDERERS = [JSONRenderer, SarifRenderer, JUnitRenderer]

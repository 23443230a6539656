"""Reference pages for validation findings: every code, what it means and how to fix it.

Public: CI logs and SARIF reports link here, read by people without a Meshgate login.
"""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from policies.validation.codes import CATALOGUE


def finding_index(request: HttpRequest) -> HttpResponse:
    return render(request, "docs/findings.html", {"codes": sorted(CATALOGUE.values(), key=lambda c: c.code)})


def finding_detail(request: HttpRequest, code: str) -> HttpResponse:
    entry = CATALOGUE.get(code.upper())
    if entry is None:
        raise Http404(f"no finding code {code}")
    return render(request, "docs/finding_detail.html", {"entry": entry})

"""Validation results in the formats CI systems read: SARIF 2.1.0 and JUnit XML.

Both are built from the same finding dictionaries the API returns (`Finding.as_dict()`), so the
JSON answer, the SARIF log and the JUnit report always say the same thing. SARIF rules carry the
finding's title and a link to its public documentation page (`/docs/findings/<code>/`), so a code
scanning view or a CI log can link straight to the explanation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from xml.etree import ElementTree

from policies.validation.codes import CATALOGUE

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
TOOL_NAME = "meshgate"
TOOL_URI = "https://github.com/meshgate/meshgate"

# SARIF `level` for each finding level.
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def _artifact(finding: Mapping[str, Any]) -> str:
    return str(finding.get("file") or "bundle")


def sarif_log(findings: Iterable[Mapping[str, Any]], *, docs_base: str, version: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run: the rules are the catalogue entries the findings use."""
    findings = list(findings)
    codes = sorted({str(f["code"]) for f in findings})
    rules = []
    for code in codes:
        entry = CATALOGUE.get(code)
        rule: dict[str, Any] = {"id": code, "helpUri": f"{docs_base}/docs/findings/{code}/"}
        if entry is not None:
            rule["name"] = "".join(word.capitalize() for word in entry.title.split())
            rule["shortDescription"] = {"text": entry.title}
            rule["fullDescription"] = {"text": entry.explanation}
            rule["help"] = {"text": entry.fix}
            rule["defaultConfiguration"] = {"level": _SARIF_LEVEL.get(str(entry.level.value), "warning")}
            if entry.reference:
                rule["properties"] = {"istioctl": entry.reference}
            if entry.istio:
                rule.setdefault("properties", {})["istioCode"] = entry.istio
        rules.append(rule)
    index = {code: position for position, code in enumerate(codes)}
    results = []
    for finding in findings:
        region: dict[str, Any] = {}
        if finding.get("line"):
            region["startLine"] = int(finding["line"])
            if finding.get("column"):
                region["startColumn"] = int(finding["column"])
        location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _artifact(finding)}}}
        if region:
            location["physicalLocation"]["region"] = region
        if finding.get("object") or finding.get("path"):
            location["logicalLocations"] = [
                {"fullyQualifiedName": ":".join(p for p in (finding.get("object"), finding.get("path")) if p)}
            ]
        result: dict[str, Any] = {
            "ruleId": finding["code"],
            "ruleIndex": index[str(finding["code"])],
            "level": _SARIF_LEVEL.get(str(finding.get("level")), "warning"),
            "message": {"text": str(finding.get("message", ""))},
            "locations": [location],
            "properties": {"layer": finding.get("layer", ""), "document": finding.get("document")},
        }
        if finding.get("istio_code"):
            result["properties"]["istioCode"] = finding["istio_code"]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "informationUri": TOOL_URI,
                        "version": version,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def junit_xml(findings: Iterable[Mapping[str, Any]], *, documents: Iterable[Mapping[str, Any]]) -> str:
    """One test suite per file, one test case per document; findings at error level are failures,
    the others appear in the test case's output."""
    findings = list(findings)
    by_file: dict[str, list[Mapping[str, Any]]] = {}
    for document in documents:
        by_file.setdefault(str(document.get("file") or "bundle"), []).append(document)
    for finding in findings:
        by_file.setdefault(_artifact(finding), [])
    suites = ElementTree.Element("testsuites", name=TOOL_NAME)
    total_tests = total_failures = 0
    for file, docs in by_file.items():
        suite = ElementTree.SubElement(suites, "testsuite", name=file)
        cases: list[tuple[str, list[Mapping[str, Any]]]] = []
        file_findings = [f for f in findings if _artifact(f) == file]
        for doc in docs:
            name = f"{doc.get('kind')}/{doc.get('namespace') or '-'}/{doc.get('name')}"
            mine = [f for f in file_findings if f.get("document") == doc.get("index")]
            cases.append((name, mine))
        loose = [f for f in file_findings if f.get("document") is None or not docs]
        if loose or not cases:
            cases.append(("file", loose))
        failures = 0
        for name, case_findings in cases:
            case = ElementTree.SubElement(suite, "testcase", name=name, classname=file)
            errors = [f for f in case_findings if f.get("level") == "error"]
            if errors:
                failures += 1
                failure = ElementTree.SubElement(
                    case,
                    "failure",
                    message="; ".join(str(f["message"]) for f in errors)[:1000],
                    type=str(errors[0]["code"]),
                )
                failure.text = "\n".join(_line(f) for f in errors)
            others = [f for f in case_findings if f.get("level") != "error"]
            if others:
                ElementTree.SubElement(case, "system-out").text = "\n".join(_line(f) for f in others)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        total_tests += len(cases)
        total_failures += failures
    suites.set("tests", str(total_tests))
    suites.set("failures", str(total_failures))
    suites.set("errors", "0")
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True)


def _line(finding: Mapping[str, Any]) -> str:
    where = _artifact(finding)
    if finding.get("line"):
        where += f":{finding['line']}"
    path = f" {finding['path']}" if finding.get("path") else ""
    return f"{where}: {finding.get('level')} {finding['code']}{path}: {finding.get('message')}"

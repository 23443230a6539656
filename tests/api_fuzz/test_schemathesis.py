"""schemathesis over the whole API: a live test server on 127.0.0.1 with a seeded organisation and a
token that may read and write; every generated request must answer without a server error and in
the shape the OpenAPI schema declares. Marked `schemathesis` and run once in CI (`.ci/run`), with a
time budget."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from portal.choices import TokenScope
from tests.api_testing import token_for
from tests.policies.drafts.helpers import cluster_org  # noqa: F401 - fixture

BUDGET_SECONDS = int(os.environ.get("MESHGATE_SCHEMATHESIS_SECONDS", "150"))


@pytest.mark.schemathesis
def test_the_api_holds_under_schemathesis(transactional_db, cluster_org, live_server, tmp_path, settings):
    org = cluster_org
    # A change's event stream answers for up to MESHGATE_EVENT_STREAM_SECONDS: here it ends well within
    # the request timeout below, so schemathesis checks its answers like any other endpoint's.
    settings.MESHGATE_EVENT_STREAM_SECONDS = 2
    token = token_for(org.author, scopes=list(TokenScope.values))
    st = Path(sys.executable).parent / "st"
    schema = tmp_path / "openapi.json"
    fetched = requests.get(f"{live_server.url}/api/schema/?format=json", timeout=120)
    assert fetched.status_code == 200
    schema.write_bytes(fetched.content)
    command = [
        str(st),
        "run",
        str(schema),
        "--url",
        live_server.url,
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "-H",
        f"Authorization: Bearer {token}",
        "--max-examples",
        "8",
        "--max-time",
        str(BUDGET_SECONDS),
        "--workers",
        "1",
        "--seed",
        "12",
        "--request-timeout",
        "20",
        "--phases",
        "examples,coverage,fuzzing",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=BUDGET_SECONDS + 120, env={**os.environ, "NO_COLOR": "1"}
    )
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-12000:]

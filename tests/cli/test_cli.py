"""The `meshgate` CLI against a live Meshgate (a real HTTP server on loopback, the simulated
cluster behind it): exit codes, output formats and the apply → status flow of a pipeline."""

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from meshgate_cli import main as cli
from policies.choices import ChangeState
from policies.models import AuditEvent, ChangeRequest
from portal.choices import TokenScope
from tests.api_testing import token_for
from tests.policies.drafts.helpers import REVIEWS_MISSING_SUBSET, REVIEWS_V2, cluster_org  # noqa: F401 - fixture


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    """A repository checkout (the working directory) with one good manifest under mesh/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mesh" / "bookinfo").mkdir(parents=True)
    (tmp_path / "mesh" / "bookinfo" / "reviews.yaml").write_text(REVIEWS_V2)
    (tmp_path / "mesh" / "README.md").write_text("not a manifest")
    return tmp_path / "mesh"


@pytest.fixture
def meshgate(live_server, cluster_org, monkeypatch):
    """Runs the CLI in-process as a pipeline would: URL and token from the environment."""
    monkeypatch.setenv("MESHGATE_URL", live_server.url)
    monkeypatch.setenv("MESHGATE_TOKEN", token_for(cluster_org.author, [TokenScope.WRITE]))
    monkeypatch.setenv("MESHGATE_CONFIG", "/nonexistent/config.toml")

    def run(*argv: str) -> int:
        return cli.main(list(argv))

    return run


def test_validate_a_clean_folder_exits_0(meshgate, repo, capsys):
    assert meshgate("validate", "-f", "mesh", "--env", "staging") == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "1 object(s) in 1 file(s): 0 error(s)" in out


def test_validate_with_errors_exits_3_and_names_the_file_and_line(meshgate, repo, capsys):
    (repo / "bookinfo" / "reviews.yaml").write_text(REVIEWS_MISSING_SUBSET)
    assert meshgate("validate", "-f", str(repo), "--env", "staging") == cli.EXIT_FINDINGS
    out = capsys.readouterr().out
    assert "mesh/bookinfo/reviews.yaml:13:" in out and "error MG0302" in out


def test_validate_sarif_and_junit_reports(meshgate, repo, tmp_path, capsys):
    (repo / "bookinfo" / "reviews.yaml").write_text(REVIEWS_MISSING_SUBSET)
    sarif = tmp_path / "report.sarif"
    assert meshgate("validate", "-f", str(repo), "--env", "staging", "--format", "sarif", "-o", str(sarif)) == 3
    log = json.loads(sarif.read_text())
    assert log["version"] == "2.1.0"
    assert {r["ruleId"] for r in log["runs"][0]["results"]} >= {"MG0302"}
    assert meshgate("validate", "-f", str(repo), "--env", "staging", "--format", "junit") == 3
    root = ElementTree.fromstring(capsys.readouterr().out)
    assert root.get("failures") == "1"


def test_validate_github_annotations(meshgate, repo, capsys):
    (repo / "bookinfo" / "reviews.yaml").write_text(REVIEWS_MISSING_SUBSET)
    meshgate("validate", "-f", str(repo), "--env", "staging", "--format", "github")
    line = next(line for line in capsys.readouterr().out.splitlines() if "MG0302" in line)
    assert line.startswith("::error file=mesh/bookinfo/reviews.yaml,line=13,")


UNREACHABLE_ROUTE = (
    REVIEWS_V2
    + """\
  - match:
    - uri:
        prefix: /v2
    route:
    - destination:
        host: reviews
"""
)


def test_failure_threshold_decides_whether_warnings_fail(meshgate, repo, capsys):
    (repo / "bookinfo" / "reviews.yaml").write_text(UNREACHABLE_ROUTE)  # a route after a catch-all: a warning
    assert meshgate("validate", "-f", "mesh", "--env", "staging") == cli.EXIT_OK
    assert "1 warning(s)" in capsys.readouterr().out
    assert meshgate("validate", "-f", "mesh", "--env", "staging", "--failure-threshold", "warning") == 3


def test_unreadable_or_unparseable_input_exits_2(meshgate, repo, tmp_path):
    assert meshgate("validate", "-f", str(tmp_path / "missing"), "--env", "staging") == cli.EXIT_INPUT
    (repo / "bookinfo" / "reviews.yaml").write_text("apiVersion: v1\nkind: x: y\n")
    assert meshgate("validate", "-f", str(repo), "--env", "staging") == cli.EXIT_INPUT


def test_usage_and_authentication_errors_exit_1(meshgate, repo, monkeypatch, capsys):
    assert meshgate("validate", "--env", "staging") == cli.EXIT_USAGE  # no -f
    monkeypatch.setenv("MESHGATE_TOKEN", "mgt_nope_nope")
    assert meshgate("validate", "-f", str(repo), "--env", "staging") == cli.EXIT_USAGE
    assert "401" in capsys.readouterr().err


def test_apply_creates_and_submits_a_traceable_change(meshgate, repo, cluster_org, capsys):
    code = meshgate(
        "apply",
        "-f",
        str(repo),
        "--env",
        "staging",
        "--title",
        "Reviews timeout",
        "--repo",
        "https://git.example.com/shop/mesh",
        "--commit",
        "0123456789abcdef0123",
        "--pr",
        "https://git.example.com/shop/mesh/pull/7",
    )
    assert code == cli.EXIT_OK
    change = ChangeRequest.objects.get()
    assert change.state == ChangeState.IN_REVIEW and change.author == cluster_org.author
    assert (change.repository, change.commit_sha, change.pull_request) == (
        "https://git.example.com/shop/mesh",
        "0123456789abcdef0123",
        "https://git.example.com/shop/mesh/pull/7",
    )
    created = AuditEvent.objects.filter(object_id=str(change.pk), action="change.created").get()
    assert created.after["commit_sha"] == "0123456789abcdef0123"
    capsys.readouterr()
    assert meshgate("status", str(change.pk), "--json") == cli.EXIT_OK
    status = json.loads(capsys.readouterr().out)
    assert status["outcome"] == "pending" and status["state"] == "in_review" and status["rollout"] is None


def test_status_of_a_rolled_back_change_exits_4(meshgate, cluster_org, capsys):
    from tests.policies.changes.helpers import make_change

    change = make_change(author=cluster_org.author, environment=cluster_org.env)
    ChangeRequest.objects.filter(pk=change.pk).update(state=ChangeState.ROLLED_BACK)
    assert meshgate("status", str(change.pk)) == cli.EXIT_CHANGE_FAILED
    assert "outcome: failed" in capsys.readouterr().out


def test_apply_again_for_the_same_pull_request_is_a_new_commit_of_the_same_change(meshgate, repo, cluster_org):
    pr = ["--pr", "https://git.example.com/shop/mesh/pull/8"]
    assert meshgate("apply", "-f", "mesh", "--env", "staging", "--title", "first", "--commit", "1111111", *pr) == 0
    change = ChangeRequest.objects.get()
    (repo / "bookinfo" / "reviews.yaml").write_text(REVIEWS_V2.replace("timeout: 5s", "timeout: 7s"))
    assert meshgate("apply", "-f", "mesh", "--env", "staging", "--title", "second", "--commit", "2222222", *pr) == 0
    assert ChangeRequest.objects.count() == 1  # the same change, its items replaced
    change.refresh_from_db()
    assert change.commit_sha == "2222222" and change.state == ChangeState.IN_REVIEW
    item = change.items.get()
    assert item.content["spec"]["http"][0]["timeout"] == "7s"
    assert item.source_file == "mesh/bookinfo/reviews.yaml"


def test_status_watch_follows_the_event_stream_line_by_line_until_the_change_ends(meshgate, cluster_org, capsys):
    import threading
    import time

    from policies.services.changes import change_reject
    from policies.services.reviews import review_request_changes
    from tests.policies.changes.helpers import submitted_change

    change = submitted_change(cluster_org)
    exit_codes: list[int] = []
    watcher = threading.Thread(target=lambda: exit_codes.append(meshgate("status", str(change.pk), "--watch")))
    watcher.start()
    out = ""
    give_up = time.monotonic() + 60
    while "in_review" not in out and time.monotonic() < give_up and watcher.is_alive():
        time.sleep(0.1)
        out += capsys.readouterr().out
    assert "in_review" in out  # the watcher is connected and has the first status

    review_request_changes(reviewer=cluster_org.approver, change=change, body="use 3s")
    change.refresh_from_db()
    change_reject(actor=cluster_org.approver, change=change, reason="not now")
    watcher.join(timeout=60)
    out += capsys.readouterr().out
    assert exit_codes == [cli.EXIT_CHANGE_FAILED]
    lines = [line for line in out.splitlines() if line.startswith(f"change #{change.pk}")]
    assert ": in_review" in lines[0] and ": rejected" in lines[-1] and "outcome: failed" in lines[-1]


def test_status_watch_reconnects_when_a_stream_ends_and_stops_at_its_own_timeout(
    meshgate, cluster_org, capsys, settings
):
    from tests.policies.changes.helpers import submitted_change

    settings.MESHGATE_EVENT_STREAM_SECONDS = 1  # each stream ends after a second: the CLI reconnects
    change = submitted_change(cluster_org)
    assert meshgate("status", str(change.pk), "--watch", "--timeout", "3s") == cli.EXIT_TIMEOUT
    captured = capsys.readouterr()
    assert captured.out.count(f"change #{change.pk} on staging: in_review") == 1  # resumed without a repeat
    assert f"timed out waiting for change #{change.pk} (in_review)" in captured.err

"""`meshgate`: validate, apply, follow and promote policy changes from a pipeline.

Exit codes (the same for every command):
    0  success: no finding at or above the threshold; the change succeeded
    1  usage, configuration or authentication error; the server could not be reached
    2  the input could not be read or parsed (missing file, YAML/JSON syntax)
    3  findings at or above --failure-threshold (validate, and apply before creating anything)
    4  the change did not succeed: rejected, rolled back, failed or aborted (apply/promote --wait)
    5  --wait timed out before the change finished
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from meshgate_cli.client import Client, CliError, load_settings

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_INPUT = 2
EXIT_FINDINGS = 3
EXIT_CHANGE_FAILED = 4
EXIT_TIMEOUT = 5

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
LEVELS = ("info", "warning", "error")
LONG_POLL_SECONDS = 30


# --- input --------------------------------------------------------------------------------------


def read_manifests(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    """The files given with -f: manifests and archives, or folders read recursively for
    .yaml/.yml/.json files. Each is named by its path relative to the working directory (as a
    repository checkout has it), so findings, SARIF and annotations point at the repository path."""
    files: list[tuple[str, bytes]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(MANIFEST_SUFFIXES))
            files.extend((_display_name(file), _read(file)) for file in found)
        elif path.is_file():
            files.append((_display_name(path), _read(path)))
        else:
            raise CliError(f"{given}: no such file or folder", EXIT_INPUT)
    if not files:
        raise CliError(f"no manifests (.yaml, .yml, .json) under {', '.join(paths)}", EXIT_INPUT)
    return files


def _display_name(path: Path) -> str:
    relative = os.path.relpath(path.resolve(), Path.cwd())
    return path.resolve().as_posix().lstrip("/") if relative.startswith("..") else Path(relative).as_posix()


def upload_parts(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What is sent: archives as they are, and every manifest in one .tar.gz whose member names
    are the repository paths (a plain upload keeps only the file's base name)."""
    archives = [(name, content) for name, content in files if name.lower().endswith(ARCHIVE_SUFFIXES)]
    manifests = [(name, content) for name, content in files if not name.lower().endswith(ARCHIVE_SUFFIXES)]
    if not manifests:
        return archives
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in manifests:
            member = tarfile.TarInfo(name)
            member.size = len(content)
            member.mtime = 0
            archive.addfile(member, io.BytesIO(content))
    return [("manifests.tar.gz", buffer.getvalue()), *archives]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}", EXIT_INPUT) from exc


def read_options(path: str) -> Any:
    """A rollout plan file (YAML or JSON): strategy, steps, analysis, gates, webhooks."""
    text = _read(Path(path)).decode(errors="replace")
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not YAML or JSON: {exc}", EXIT_INPUT) from exc


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `2h` or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 2h)")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


# --- output -------------------------------------------------------------------------------------


def findings_text(findings: list[dict[str, Any]], out: TextIO) -> None:
    for finding in findings:
        where = finding.get("file") or "bundle"
        if finding.get("line"):
            where += f":{finding['line']}"
            if finding.get("column"):
                where += f":{finding['column']}"
        obj = f" {finding['object']}" if finding.get("object") else ""
        path = f" ({finding['path']})" if finding.get("path") else ""
        istio = f" [{finding['istio_code']}]" if finding.get("istio_code") else ""
        out.write(f"{where}: {finding['level']} {finding['code']}{istio}{obj}{path}: {finding['message']}\n")


def findings_github(findings: list[dict[str, Any]], out: TextIO) -> None:
    """GitHub Actions workflow commands: each finding becomes an annotation on the file and line."""
    kinds = {"error": "error", "warning": "warning", "info": "notice"}
    for finding in findings:
        props = []
        if finding.get("file"):
            props.append(f"file={_escape_property(finding['file'])}")
        if finding.get("line"):
            props.append(f"line={finding['line']}")
        if finding.get("column"):
            props.append(f"col={finding['column']}")
        props.append(f"title={_escape_property(finding['code'])}")
        message = finding["message"] + (f" ({finding['path']})" if finding.get("path") else "")
        out.write(f"::{kinds.get(finding['level'], 'warning')} {','.join(props)}::{_escape_data(message)}\n")


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(str(text)).replace(":", "%3A").replace(",", "%2C")


def level_counts(header: str) -> dict[str, int]:
    counts = dict.fromkeys(LEVELS, 0)
    for part in header.split(","):
        if "=" in part:
            level, _, count = part.strip().partition("=")
            if count.isdigit():
                counts[level] = int(count)
    return counts


def at_or_above(counts: dict[str, int], threshold: str) -> int:
    return sum(counts.get(level, 0) for level in LEVELS[LEVELS.index(threshold) :])


def emit(args: argparse.Namespace, data: Any, human: Callable[[TextIO], object]) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        human(sys.stdout)


def status_line(status: dict[str, Any]) -> str:
    parts = [f"change #{status['id']} on {status['environment']}: {status['state']}"]
    approval = status.get("approval") or {}
    if status["state"] in ("in_review", "changes_requested", "draft") and approval.get("summary"):
        parts.append(approval["summary"])
    rollout = status.get("rollout")
    if rollout:
        parts.append(
            f"rollout #{rollout['id']} {rollout['state']} phase {rollout['phase'] or '-'} "
            f"({rollout['phase_index'] + 1}/{rollout['phases']}) weight {rollout['weight']} %"
        )
        reason = rollout.get("rollback_reason")
        if reason:
            parts.append(f"rollback reason: {reason.get('message') or reason}")
        elif rollout.get("pause_reason"):
            parts.append(f"paused: {rollout['pause_reason']}")
    if status.get("done"):
        parts.append(f"outcome: {status['outcome']}")
    return "; ".join(parts)


# --- commands -----------------------------------------------------------------------------------


def client_for(args: argparse.Namespace) -> Client:
    settings = load_settings(url=args.url, token=args.token, usage_exit=EXIT_USAGE)
    return Client(settings, auth_exit=EXIT_USAGE, server_exit=EXIT_USAGE)


def cmd_validate(args: argparse.Namespace) -> int:
    files = read_manifests(args.filename)
    client = client_for(args)
    fmt = args.format
    response = client.validate(
        environment=args.env,
        files=upload_parts(files),
        namespace=args.namespace,
        fmt=fmt,
        skip_permissions=args.content_only,
    )
    counts = level_counts(response.headers.get("X-Meshgate-Findings", ""))
    if fmt in ("sarif", "junit"):
        body_text = response.text
        if args.output:
            Path(args.output).write_text(body_text)
        else:
            sys.stdout.write(body_text if body_text.endswith("\n") else body_text + "\n")
        parse_errors = _sarif_parse_errors(body_text) if fmt == "sarif" else 0
    else:
        body = response.json()
        findings = body["findings"]
        counts = {level: sum(1 for f in findings if f["level"] == level) for level in LEVELS}
        parse_errors = sum(1 for f in findings if f["level"] == "error" and f.get("layer") == "parse")
        out: TextIO
        with open(args.output, "w") if args.output else _stdout() as out:
            if fmt == "json":
                json.dump(body, out, indent=2)
                out.write("\n")
            elif fmt == "github":
                findings_github(findings, out)
            else:
                findings_text(findings, out)
                documents = len(body.get("documents", []))
                out.write(
                    f"{documents} object(s) in {len(files)} file(s): {counts['error']} error(s), "
                    f"{counts['warning']} warning(s), {counts['info']} info\n"
                )
    if parse_errors:
        return EXIT_INPUT
    return EXIT_FINDINGS if at_or_above(counts, args.failure_threshold) else EXIT_OK


def _sarif_parse_errors(text: str) -> int:
    try:
        log = json.loads(text)
    except ValueError:
        return 0
    results = [r for run in log.get("runs", []) for r in run.get("results", [])]
    return sum(1 for r in results if r.get("level") == "error" and (r.get("properties") or {}).get("layer") == "parse")


class _stdout:
    """`sys.stdout` as a context manager that is not closed on exit."""

    def __enter__(self) -> TextIO:
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()


def cmd_apply(args: argparse.Namespace) -> int:
    files = read_manifests(args.filename)
    client = client_for(args)
    fields: dict[str, Any] = {"environment": args.env, "title": args.title, "description": args.description or ""}
    for key, value in (("repository", args.repo), ("commit_sha", args.commit), ("pull_request", args.pr)):
        if value:
            fields[key] = value
    if args.pr and not args.link:
        fields["link"] = args.pr
    elif args.link:
        fields["link"] = args.link
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    parts = [("files", (name, content)) for name, content in upload_parts(files)]
    existing = _open_change_for(client, env=args.env, pull_request=args.pr) if args.pr else None
    if existing is not None:
        # a new commit of the pull request: the open change gets the new items (approvals are voided)
        response = client.request(
            "PUT",
            f"changes/{existing}/items/",
            data={"message": args.title, "commit_sha": args.commit or ""},
            files=parts,
            ok=(200, 400),
        )
    else:
        response = client.request("POST", "changes/", data=fields, headers=headers, files=parts, ok=(200, 201, 400))
    body = response.json()
    if body.get("code") == "no_changes":
        _say(args, f"no changes: every object already equals what {args.env} holds")
        emit(args, body, lambda out: None)
        return EXIT_OK
    if response.status_code == 400:
        findings = (body.get("details") or {}).get("findings") or []
        sys.stderr.write(f"meshgate: the change was refused: {body.get('message')}\n")
        findings_text(findings, sys.stderr)
        return EXIT_INPUT if any(f.get("layer") == "parse" for f in findings) else EXIT_FINDINGS
    change_id = int(body["id"])
    if args.rollout_options:
        client.post_json(f"changes/{change_id}/rollout-options/", read_options(args.rollout_options))
    if body.get("state") == "draft":
        client.post_json(f"changes/{change_id}/submit/")
    _say(args, f"change #{change_id} submitted on {args.env}: {args.settings_url}/changes/{change_id}/")
    if not args.wait:
        status = client.change_status(change_id)
        emit(args, status, lambda out: out.write(status_line(status) + "\n"))
        return EXIT_OK
    return follow(args, client, change_id, schedule=True)


OPEN_STATES = ("draft", "in_review", "changes_requested", "approved", "scheduled")


def _open_change_for(client: Client, *, env: str, pull_request: str) -> int | None:
    """The caller's open change (not yet rolling out) that follows this pull request, if any."""
    found = client.get_json(
        "changes/",
        params={"environment": env, "pull_request": pull_request, "mine": "true", "state": list(OPEN_STATES)},
    )
    results = found.get("results", found) if isinstance(found, dict) else found
    return int(results[0]["id"]) if results else None


def follow(args: argparse.Namespace, client: Client, change_id: int, *, schedule: bool) -> int:
    """Waits (long-polling the status endpoint) until the change ends or --timeout passes; once
    approved, schedules it (the author may) so that the rollout starts in the next window."""
    deadline = time.monotonic() + args.timeout
    status = client.change_status(change_id)
    version: str | None = None
    scheduled = False
    while True:
        if status["version"] != version:
            if not args.json:
                _say(args, status_line(status))
            version = status["version"]
        if status["done"]:
            if args.json:
                emit(args, status, lambda out: None)
            return EXIT_OK if status["outcome"] == "succeeded" else EXIT_CHANGE_FAILED
        if schedule and not scheduled and status["state"] == "approved" and status["approval"].get("approvable"):
            client.post_json(f"changes/{change_id}/schedule/")
            scheduled = True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            sys.stderr.write(f"meshgate: timed out waiting for change #{change_id} ({status['state']})\n")
            return EXIT_TIMEOUT
        status = client.change_status(change_id, wait=int(min(LONG_POLL_SECONDS, max(1, remaining))), version=version)


def watch(args: argparse.Namespace, client: Client, change_id: int) -> int:
    """Follows the change's server-sent event stream (one line per move of its status) until it
    ends or --timeout passes, reconnecting with Last-Event-ID whenever the server closes a stream."""
    deadline = time.monotonic() + args.timeout
    last_id: str | None = None
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        for event, event_id, data in client.change_events(change_id, last_event_id=last_id):
            if event == "status":
                status, last_id = data, event_id
                if not args.json:
                    _say(args, status_line(data))
            elif event == "end" and data.get("reason") == "done":
                if status is None:  # resumed after the last status: fetch it for the outcome
                    status = client.change_status(change_id)
                if args.json:
                    emit(args, status, lambda out: None)
                return EXIT_OK if status["outcome"] == "succeeded" else EXIT_CHANGE_FAILED
            elif event == "end" and data.get("reason") == "gone":
                raise CliError(f"change #{change_id} is no longer visible to you", EXIT_USAGE)
            if time.monotonic() >= deadline:
                break
    state = status["state"] if status else "unknown"
    sys.stderr.write(f"meshgate: timed out waiting for change #{change_id} ({state})\n")
    return EXIT_TIMEOUT


def cmd_status(args: argparse.Namespace) -> int:
    client = client_for(args)
    if args.watch:
        args.timeout = args.timeout or 24 * 3600.0
        return watch(args, client, args.change)
    status = client.change_status(args.change)
    emit(args, status, lambda out: out.write(status_line(status) + "\n"))
    if not status["done"]:
        return EXIT_OK
    return EXIT_OK if status["outcome"] == "succeeded" else EXIT_CHANGE_FAILED


def cmd_promote(args: argparse.Namespace) -> int:
    client = client_for(args)
    promoted = client.post_json(f"changes/{args.change}/promote/")
    new_id = int(promoted["id"])
    _say(args, f"change #{args.change} promoted as change #{new_id} on {promoted.get('environment')}")
    if promoted.get("state") == "draft":
        client.post_json(f"changes/{new_id}/submit/")
    if not args.wait:
        emit(args, promoted, lambda out: None)
        return EXIT_OK
    return follow(args, client, new_id, schedule=True)


def cmd_rollout(args: argparse.Namespace) -> int:
    client = client_for(args)
    body: dict[str, Any] = {}
    if args.reason and args.action in ("pause", "abort"):
        body["reason"] = args.reason
    if args.action == "retry":
        # a retry starts a new attempt of the change the rollout belongs to
        rollout = client.get_json(f"rollouts/{args.rollout}/")
        result = client.post_json(f"changes/{rollout['change']}/retry/")
    else:
        result = client.post_json(f"rollouts/{args.rollout}/{args.action}/", body)
    emit(
        args,
        result,
        lambda out: out.write(f"rollout #{args.rollout}: {args.action} accepted; state {result.get('state', '?')}\n"),
    )
    return EXIT_OK


def cmd_token_create(args: argparse.Namespace) -> int:
    client = client_for(args)
    body: dict[str, Any] = {"name": args.name, "scopes": args.scope or ["read", "write"]}
    if args.expires_in_days:
        body["expires_in_days"] = args.expires_in_days
    result = client.post_json(f"service-accounts/{args.service_account}/tokens/", body)
    emit(
        args,
        result,
        lambda out: out.write(
            f"token {result['name']} for {args.service_account} (shown once, store it now):\n{result['token']}\n"
        ),
    )
    return EXIT_OK


def _say(args: argparse.Namespace, message: str) -> None:
    stream = sys.stderr if args.json else sys.stdout
    stream.write(f"{message}\n")
    stream.flush()


# --- arguments ----------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="Meshgate's URL (or MESHGATE_URL, or `url` in the config file)")
    common.add_argument("--token", help="an API token (or MESHGATE_TOKEN, or `token` in the config file)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")

    root = argparse.ArgumentParser(
        prog="meshgate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", parents=[common], help="validate manifests against an environment")
    validate.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="PATH",
        help="a manifest, an archive or a folder (repeatable)",
    )
    validate.add_argument("--env", required=True, help="the environment to validate against")
    validate.add_argument("-n", "--namespace", help="namespace for objects that name none (as kubectl -n)")
    validate.add_argument("--format", choices=["text", "json", "sarif", "junit", "github"], default="text")
    validate.add_argument(
        "--failure-threshold",
        choices=["error", "warning", "info"],
        default="error",
        help="exit 3 on findings at or above this level (default: error)",
    )
    validate.add_argument("-o", "--output", help="write the report to this file instead of stdout")
    validate.add_argument(
        "--content-only",
        action="store_true",
        help="check the content only, not your team's permissions on the namespaces",
    )
    validate.set_defaults(func=cmd_validate)

    apply = commands.add_parser("apply", parents=[common], help="create and submit a change from manifests")
    apply.add_argument("-f", "--filename", action="append", required=True, metavar="PATH")
    apply.add_argument("--env", required=True)
    apply.add_argument("--title", required=True)
    apply.add_argument("--description")
    apply.add_argument("--repo", help="the repository URL the manifests come from")
    apply.add_argument("--commit", help="the commit SHA")
    apply.add_argument("--pr", help="the pull request URL")
    apply.add_argument("--link", help="a link shown on the change (default: the pull request)")
    apply.add_argument("--idempotency-key", help="resending with the same key creates nothing new")
    apply.add_argument(
        "--rollout-options",
        metavar="FILE",
        help="the change's rollout plan (YAML/JSON: strategy, steps, analysis, gates, webhooks)",
    )
    apply.add_argument("--wait", action="store_true", help="wait through approval and rollout")
    apply.add_argument("--timeout", type=parse_duration, default=parse_duration("30m"))
    apply.set_defaults(func=cmd_apply)

    status = commands.add_parser("status", parents=[common], help="a change's state, approvals and rollout")
    status.add_argument("change", type=int)
    status.add_argument(
        "--watch", action="store_true", help="follow the change's event stream until it ends (a line per move)"
    )
    status.add_argument("--timeout", type=parse_duration, default=None)
    status.set_defaults(func=cmd_status)

    promote = commands.add_parser(
        "promote", parents=[common], help="promote a completed change to the next environment"
    )
    promote.add_argument("change", type=int)
    promote.add_argument("--wait", action="store_true")
    promote.add_argument("--timeout", type=parse_duration, default=parse_duration("30m"))
    promote.set_defaults(func=cmd_promote)

    rollout = commands.add_parser("rollout", parents=[common], help="control a rollout")
    rollout.add_argument("action", choices=["pause", "resume", "abort", "promote", "retry"])
    rollout.add_argument("rollout", type=int)
    rollout.add_argument("--reason", help="why (pause, abort)")
    rollout.set_defaults(func=cmd_rollout)

    token = commands.add_parser("token", parents=[common], help="API tokens of service accounts")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", parents=[common], help="issue a token for a service account")
    create.add_argument("service_account", help="the service account's name")
    create.add_argument("--name", required=True, help="what the token is for, e.g. github-actions")
    create.add_argument("--scope", action="append", choices=["read", "write"])
    create.add_argument("--expires-in-days", type=int)
    create.set_defaults(func=cmd_token_create)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser()
    try:
        args = arguments.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on a usage error; ours is 1
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        args.settings_url = (args.url or "").rstrip("/")
        if not args.settings_url:
            args.settings_url = load_settings(url=args.url, token=args.token, usage_exit=EXIT_USAGE).url
        code: int = args.func(args)
        return code
    except CliError as exc:
        sys.stderr.write(f"meshgate: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_USAGE

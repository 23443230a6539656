"""The HTTP side of the CLI: where the server is, who is calling, and one method per endpoint."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

DEFAULT_TIMEOUT = 60.0
USER_AGENT = "meshgate-cli"


class CliError(Exception):
    """A failure the CLI reports on one line and turns into an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Settings:
    url: str
    token: str


def config_path() -> Path:
    explicit = os.environ.get("MESHGATE_CONFIG")
    if explicit:
        return Path(explicit)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "meshgate" / "config.toml"


def load_settings(*, url: str | None, token: str | None, usage_exit: int) -> Settings:
    """Flags win over the environment (MESHGATE_URL, MESHGATE_TOKEN), which wins over the config
    file (`url = ...`, `token = ...` in ~/.config/meshgate/config.toml or $MESHGATE_CONFIG)."""
    file_values: dict[str, Any] = {}
    path = config_path()
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CliError(f"cannot read the config file {path}: {exc}", usage_exit) from exc
    resolved_url = url or os.environ.get("MESHGATE_URL") or file_values.get("url")
    resolved_token = token or os.environ.get("MESHGATE_TOKEN") or file_values.get("token")
    if not resolved_url:
        raise CliError("no server: give --url, set MESHGATE_URL or `url` in the config file", usage_exit)
    if not resolved_token:
        raise CliError("no token: give --token, set MESHGATE_TOKEN or `token` in the config file", usage_exit)
    return Settings(url=str(resolved_url).rstrip("/"), token=str(resolved_token))


class Client:
    def __init__(self, settings: Settings, *, auth_exit: int, server_exit: int) -> None:
        self.settings = settings
        self.auth_exit = auth_exit
        self.server_exit = server_exit
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"Bearer {settings.token}", "User-Agent": USER_AGENT})

    # --- plumbing ---------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: Mapping[str, Any] | None = None,
        files: Iterable[tuple[str, tuple[str, bytes]]] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        ok: tuple[int, ...] = (200, 201, 202),
        stream: bool = False,
    ) -> requests.Response:
        url = f"{self.settings.url}/api/v1/{path.lstrip('/')}"
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                json=json_body,
                data=data,
                files=list(files) if files else None,
                headers=dict(headers or {}),
                timeout=timeout,
                allow_redirects=False,
                stream=stream,
            )
        except requests.RequestException as exc:
            raise CliError(f"cannot reach {self.settings.url}: {exc}", self.server_exit) from exc
        if response.status_code in ok:
            return response
        message = _error_message(response)
        if response.status_code in (401, 403):
            raise CliError(f"{method} {path}: {response.status_code} {message}", self.auth_exit)
        raise CliError(f"{method} {path}: {response.status_code} {message}", self.server_exit)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {}, **kwargs).json()

    # --- endpoints --------------------------------------------------------------------------------

    def validate(
        self,
        *,
        environment: str,
        files: list[tuple[str, bytes]],
        namespace: str | None,
        fmt: str,
        skip_permissions: bool,
    ) -> requests.Response:
        data: dict[str, Any] = {"environment": environment}
        if namespace:
            data["namespace"] = namespace
        if skip_permissions:
            data["checks"] = "content"
        params = {"format": fmt} if fmt in ("sarif", "junit") else None
        return self.request(
            "POST",
            "validate",
            data=data,
            params=params,
            files=[("files", (name, content)) for name, content in files],
        )

    def change_status(self, change_id: int, *, wait: int = 0, version: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"wait": wait}
        if version:
            params["version"] = version
        result: dict[str, Any] = self.get_json(f"changes/{change_id}/status/", params=params, timeout=wait + 30)
        return result

    def change_events(self, change_id: int, *, last_event_id: str | None = None) -> Iterator[tuple[str, str, Any]]:
        """One connection to the change's event stream: (event, id, data) until the server ends it,
        with a ("heartbeat", "", None) for each heartbeat comment."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        path = f"changes/{change_id}/events/stream/"
        response = self.request("GET", path, headers=headers, timeout=(30, 120), stream=True)
        fields: dict[str, str] = {}
        try:
            for line in response.iter_lines(chunk_size=1, decode_unicode=True):
                if line.startswith(":"):
                    yield "heartbeat", "", None  # lets the caller check its own deadline
                    continue
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if "event" in fields:
                    yield fields["event"], fields.get("id", ""), json.loads(fields.get("data") or "null")
                fields = {}
        except requests.RequestException as exc:
            raise CliError(f"GET {path}: the stream broke: {exc}", self.server_exit) from exc
        finally:
            response.close()


def _error_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.text[:300]
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("detail") or body)
        details = body.get("details")
        if isinstance(details, dict) and details.get("findings"):
            lines = [
                f"  {f.get('code')} {f.get('file', '')}:{f.get('line') or ''} {f.get('message')}"
                for f in details["findings"][:20]
            ]
            message += "\n" + "\n".join(lines)
        elif isinstance(details, dict) and details:
            message += ": " + "; ".join(f"{field}: {why}" for field, why in list(details.items())[:20])
        return message
    return str(body)[:300]

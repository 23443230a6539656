"""A real HTTP receiver on 127.0.0.1 for notification and webhook tests: answers a scripted list of
status codes (then `default`) and records every request it saw.

Registered in `tests/conftest.py` (`pytest_plugins`): the `receiver_factory` fixture starts receivers
and stops them after the test."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    script: list[int]
    default: int = 200
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.script.pop(0) if self.script else self.default


def start_receiver(script: list[int] | None = None, default: int = 200) -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver(url="", script=list(script or []), default=default)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # http.server names its handlers so
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.requests.append(Seen(self.path, {k: v for k, v in self.headers.items()}, body))
            status = receiver.next_status()
            payload = b"ok" if status < 300 else b"receiver says no"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/meshgate"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@pytest.fixture
def receiver_factory() -> Iterator:
    servers = []

    def make(script: list[int] | None = None, default: int = 200) -> Receiver:
        receiver, server = start_receiver(script, default)
        servers.append(server)
        return receiver

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()

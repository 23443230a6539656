"""Hostile receivers through the shipped egress client: how soon a call gives up on each.

    python benchmarks/egress_deadlines.py [--runs 5]

Receivers on 127.0.0.1 (allowed here as an administrator would allow a network): one that trickles
its answer a byte every 0.2 s (28 s in all), one that sends a 300 MiB answer. Measured: wall time of
`egress.post` with a total deadline of 1.5 s (target < 2.5 s), of a rollout webhook with
`timeout_seconds: 1` (target < 3 s), and of the 300 MiB answer read up to the 64 KiB cap (target < 3 s).
The tests assert the behaviour (the client hangs up before the end, the error names the deadline);
this measures the time.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.test")


def _receiver(behave: Callable[[socket.socket], None]) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        try:
            conn.recv(65536)
            behave(conn)
        except OSError:
            pass  # the client hung up
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def _trickle(conn: socket.socket) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 140\r\n\r\n" + b"x" * 140:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def _huge(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 314572800\r\n\r\n")
    chunk = b"A" * 65536
    for _ in range(300 * 16):
        conn.sendall(chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import django

    django.setup()
    from integrations.http import egress
    from policies.rollout import webhooks

    loopback = egress.EgressPolicy.parse(["127.0.0.0/8"])

    def trickle_post(port: int) -> None:
        try:
            egress.post(f"http://127.0.0.1:{port}/", body=b"{}", deadline_seconds=1.5, policy=loopback)
        except egress.EgressError:
            return
        raise SystemExit("the trickling receiver was read to the end")

    def trickle_webhook(port: int) -> None:
        hook = webhooks.Webhook(name="slow", phase="step", url=f"http://127.0.0.1:{port}/", timeout_seconds=1)
        (result,) = webhooks.call_all([hook], {"rollout": 1})
        assert not result.ok, result

    def huge_post(port: int) -> None:
        response = egress.post(
            f"http://127.0.0.1:{port}/", body=b"{}", deadline_seconds=10, max_bytes=64 * 1024, policy=loopback
        )
        assert response.truncated and len(response.body) == 64 * 1024

    from django.test import override_settings

    cases: list[tuple[str, Callable[[socket.socket], None], Callable[[int], None], str]] = [
        ("trickling receiver, egress deadline 1.5 s", _trickle, trickle_post, "2.5 s"),
        ("trickling receiver, webhook timeout 1 s", _trickle, trickle_webhook, "3 s"),
        ("300 MiB answer, read up to the 64 KiB cap", _huge, huge_post, "3 s"),
    ]
    print(f"{'receiver':44} {'median':>8} {'max':>8}  target")
    with override_settings(MESHGATE_EGRESS_ALLOW=["127.0.0.0/8"]):
        for label, behave, call, target in cases:
            times = []
            for _ in range(args.runs):
                server, port = _receiver(behave)
                started = time.perf_counter()
                call(port)
                times.append(time.perf_counter() - started)
                server.close()
            print(f"{label:44} {statistics.median(times):7.2f}s {max(times):7.2f}s  < {target}")


if __name__ == "__main__":
    main()

"""The egress policy against real sockets on 127.0.0.1: hostile receivers (trickling, huge answers,
redirects) and every spelling of an internal address."""

import socket
import threading
import time
import tracemalloc

import pytest

from integrations.http import egress

OPEN = egress.EgressPolicy()  # no exceptions: what production does by default
LOOPBACK = egress.EgressPolicy.parse(["127.0.0.0/8"])


class RawServer:
    """A TCP listener on 127.0.0.1 that runs `behave(conn)` for each connection."""

    def __init__(self, behave):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.peers: list[tuple[str, int]] = []  # in the order accepted
        self.finished = 0  # connections whose `behave` returned or broke off (the client hung up)
        self.requests: list[bytes] = []
        self.behave = behave
        self.changed = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def connections(self) -> int:
        return len(self.peers)

    def _serve(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            with self.changed:
                self.peers.append(peer)
                self.changed.notify_all()
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            self.requests.append(conn.recv(65536))
            self.behave(conn)
        except OSError:
            pass
        finally:
            conn.close()
            with self.changed:
                self.finished += 1
                self.changed.notify_all()

    def wait(self, predicate, what: str, timeout: float = 60) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"not reached in {timeout}s: {what}"

    def connections_so_far(self) -> int:
        """The connections made before now: one of our own is accepted after every earlier one (the
        listen queue is first in, first out), so those before it are all there is."""
        with socket.create_connection(("127.0.0.1", self.port)) as probe:
            mine = probe.getsockname()
            self.wait(lambda: mine in self.peers, "the probe connection accepted")
        return self.peers.index(mine)

    def close(self):
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def make(behave):
        server = RawServer(behave)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_a_trickling_receiver_is_given_up_on_at_the_total_deadline(raw_server):
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    sent = []

    def trickle(conn):
        for byte in answer:
            conn.sendall(bytes([byte]))
            sent.append(byte)
            time.sleep(0.2)  # each read is quick; the whole answer takes 28 s

    server = raw_server(trickle)
    with pytest.raises(egress.EgressError, match="no complete answer within 1.5 s"):
        egress.post(f"http://127.0.0.1:{server.port}/", body=b"{}", deadline_seconds=1.5, policy=LOOPBACK)
    # the client hung up while the answer was still coming: the receiver could not send the rest
    # (benchmarks/egress_deadlines.py measures how soon after the deadline)
    server.wait(lambda: server.finished == 1, "the receiver sees the hang-up")
    assert len(sent) < len(answer)


def test_a_huge_answer_is_read_only_up_to_the_cap(raw_server):
    sent_all = []

    def huge(conn):
        conn.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 314572800\r\n\r\n")
        chunk = b"A" * 65536
        for _ in range(300 * 16):  # 300 MiB, if anyone read it
            conn.sendall(chunk)
        sent_all.append(True)

    server = raw_server(huge)
    tracemalloc.start()
    try:
        response = egress.post(
            f"http://127.0.0.1:{server.port}/", body=b"{}", deadline_seconds=10, max_bytes=64 * 1024, policy=LOOPBACK
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status == 500 and len(response.body) == 64 * 1024 and response.truncated
    server.wait(lambda: server.finished == 1, "the receiver sees the hang-up")
    assert not sent_all, "the client read on past its cap"
    assert peak < 4 * 1024 * 1024
    assert len(response.text()) <= egress.MAX_SHOWN_CHARS


def test_redirects_are_not_followed(raw_server):
    target = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret"))
    redirector = raw_server(
        lambda conn: conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target.port}/\r\nContent-Length: 0\r\n\r\n".encode()
        )
    )
    response = egress.post(f"http://127.0.0.1:{redirector.port}/", body=b"{}", policy=LOOPBACK)
    assert response.status == 302 and not response.ok
    assert target.connections_so_far() == 0


INTERNAL = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://127.1:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://0.0.0.0:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://100.100.100.200/",
    "http://[fd00:ec2::254]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_in_every_spelling_are_refused_before_connecting(raw_server, url):
    server = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ninside"))
    with pytest.raises(egress.EgressRefused, match="is not an allowed destination") as caught:
        egress.post(url.format(port=server.port), body=b"{}", deadline_seconds=2, policy=OPEN)
    assert caught.value.refused and "inside" not in caught.value.message
    assert server.connections_so_far() == 0


def test_public_addresses_pass_the_policy():
    for address in ("8.8.8.8", "2001:4860:4860::8888", "1.1.1.1"):
        import ipaddress

        assert egress.why_refused(ipaddress.ip_address(address)) is None


def test_admins_allow_a_network_or_a_host(raw_server, monkeypatch):
    server = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert egress.post(f"http://127.0.0.1:{server.port}/", body=b"", policy=LOOPBACK).status == 204
    by_name = egress.EgressPolicy.parse(["localhost"])
    assert egress.post(f"http://localhost:{server.port}/", body=b"", policy=by_name).status == 204
    with pytest.raises(egress.EgressRefused):
        egress.post(f"http://127.0.0.1:{server.port}/", body=b"", policy=egress.EgressPolicy.parse(["10.0.0.0/8"]))


def test_the_call_connects_to_the_vetted_address_and_keeps_the_host_name(raw_server, monkeypatch):
    """DNS rebinding: the name is resolved once; a second, different answer is never used."""
    server = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    real = socket.getaddrinfo
    answers = ["127.0.0.1", "10.9.9.9"]
    calls = []

    def resolver(host, port, *args, **kwargs):  # the DNS server, at the network edge
        if host == "hooks.rebind.test":
            calls.append(host)
            return real(answers[min(len(calls) - 1, 1)], port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    response = egress.post(f"http://hooks.rebind.test:{server.port}/x", body=b"{}", policy=LOOPBACK)
    assert response.status == 200 and calls == ["hooks.rebind.test"]
    assert b"Host: hooks.rebind.test" in server.requests[0]
    # The next call resolves to an internal address: refused, no connection.
    with pytest.raises(egress.EgressRefused, match="10.9.9.9 is a private address"):
        egress.post(f"http://hooks.rebind.test:{server.port}/x", body=b"{}", policy=LOOPBACK)
    assert server.connections_so_far() == 1


def test_the_policy_comes_from_settings(settings):
    settings.MESHGATE_EGRESS_ALLOW = ["*.corp.example", "10.20.0.0/16"]
    policy = egress.configured_policy()
    assert policy.host_allowed("hooks.corp.example") and not policy.host_allowed("corp.example.org")
    import ipaddress

    assert policy.address_allowed(ipaddress.ip_address("10.20.3.4"))
    assert not policy.address_allowed(ipaddress.ip_address("10.21.3.4"))

"""One policy for every outbound request to a URL a user or an admin typed (notification channels,
rollout webhooks, anything later).

- **A total deadline per call**, not per read: a watchdog shuts the socket down when it passes, so a
  receiver trickling one byte every few seconds is given up on at the deadline.
- **A response-size cap**, read in a stream: at most `max_bytes` of the body are ever read.
- **No redirects**: a 3xx is an answer like any other; nothing follows `Location`.
- **An egress policy after DNS resolution**: the host is resolved once, every address is vetted, and
  the connection goes to the vetted address (the `Host` header and TLS SNI/certificate check keep the
  name), so a DNS answer that changes between the check and the connect (DNS rebinding) cannot
  reach inside. Refused unless globally routable: loopback, private (RFC 1918, ULA), link-local (the
  169.254.169.254 metadata address), CGNAT (100.64.0.0/10), multicast, reserved and unspecified
  addresses, including their IPv4-mapped and NAT64 IPv6 spellings. The resolver reads the decimal
  (`2130706433`), hex (`0x7f000001`), octal (`0177.0.0.1`) and short (`127.1`) IPv4 forms the way a
  client would, and the policy judges what they resolve to.
- **Admin exceptions**: `allow` entries (settings `MESHGATE_EGRESS_ALLOW`, or the environment
  variable of the same name, comma-separated) are host names (`hooks.internal`, `*.corp.example`)
  or networks (`10.20.0.0/16`, `127.0.0.1/32`, `fd00::/8`).

Proxies from the environment are not used: a proxy would resolve the name itself, out of reach of
the policy.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_MAX_BYTES = 64 * 1024
MAX_SHOWN_CHARS = 300
"""How much of an answer a user is ever shown."""
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class EgressError(Exception):
    """The call failed (timeout, connection, TLS, protocol); `refused` when the policy refused the target
    before any byte was sent (never retry those: the same URL is refused again)."""

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.message = message
        self.refused = refused


class EgressRefused(EgressError):
    def __init__(self, message: str):
        super().__init__(message, refused=True)


@dataclass(frozen=True)
class EgressPolicy:
    hosts: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...]) -> EgressPolicy:
        hosts: list[str] = []
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.append(entry.rstrip("."))
        return cls(hosts=tuple(hosts), networks=tuple(networks))

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(
            host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern for pattern in self.hosts
        )

    def address_allowed(self, address: IPAddress) -> bool:
        return any(address.version == network.version and address in network for network in self.networks)


def configured_policy() -> EgressPolicy:
    """The admin's exceptions: Django's `MESHGATE_EGRESS_ALLOW` when settings are configured, else the
    environment variable."""
    entries: list[str] | None = None
    try:
        from django.conf import settings

        if settings.configured:
            entries = list(getattr(settings, "MESHGATE_EGRESS_ALLOW", []) or [])
    except ImportError:  # pragma: no cover - Django is always installed with Meshgate
        entries = None
    if entries is None:
        entries = [part for part in os.environ.get("MESHGATE_EGRESS_ALLOW", "").split(",") if part.strip()]
    return EgressPolicy.parse(entries)


def _effective(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 spelling carries (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def why_refused(address: IPAddress) -> str | None:
    """None when `address` is a public destination; otherwise what kind of address it is."""
    effective = _effective(address)
    if effective.is_loopback:
        return "a loopback address"
    if effective.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if effective.version == 4 and effective in _CGNAT:
        return "a carrier-grade NAT address"
    if effective.is_private:
        return "a private address"
    if effective.is_multicast or effective.is_unspecified or effective.is_reserved:
        return "a reserved address"
    if not effective.is_global:
        return "a non-public address"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]
    """The vetted addresses, in resolver order; the call connects to these only."""


def _split(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"{shown(url)} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused(f"{shown(url)} is not an http(s) URL")
    if parts.username or parts.password:
        raise EgressRefused("URLs with credentials are not called")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def vet(url: str, *, policy: EgressPolicy | None = None, resolve: bool = True) -> Target:
    """Resolves and vets `url`'s host; raises `EgressRefused` saying why. With `resolve=False` (checks at
    save time, when the name may only resolve where the worker runs) a name that does not resolve passes
    and only literal or resolvable addresses are judged."""
    policy = policy if policy is not None else configured_policy()
    scheme, host, port, path = _split(url)
    host_allowed = policy.host_allowed(host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        if not resolve:
            return Target(scheme, host, port, path, ())
        raise EgressError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[str] = []
    refusals: list[str] = []
    for info in infos:
        literal = str(info[4][0]).split("%", 1)[0]
        address = ipaddress.ip_address(literal)
        reason = why_refused(address)
        if (
            reason is None
            or host_allowed
            or policy.address_allowed(address)
            or policy.address_allowed(_effective(address))
        ):
            if literal not in addresses:
                addresses.append(literal)
        else:
            refusals.append(f"{literal} is {reason}")
    if refusals:
        # One refused address refuses the host: a name that resolves inside the network is not called.
        raise EgressRefused(
            f"{host} is not an allowed destination: {refusals[0]} (an admin may allow it with MESHGATE_EGRESS_ALLOW)"
        )
    if not addresses:
        raise EgressError(f"cannot resolve {host}: no address")
    return Target(scheme, host, port, path, tuple(addresses))


@dataclass
class Response:
    status: int
    body: bytes
    """At most the call's `max_bytes`."""
    truncated: bool
    headers: dict[str, str] = field(default_factory=dict)
    elapsed_ms: int = 0

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def text(self, limit: int = MAX_SHOWN_CHARS) -> str:
        """The answer as a user may see it: decoded, control characters dropped, trimmed."""
        return shown(self.body.decode("utf-8", "replace"), limit)


def shown(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    cleaned = "".join(ch if ch.isprintable() or ch == " " else " " for ch in text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class _Connection(http.client.HTTPConnection):
    """Connects to a vetted address; `Host` stays the name."""

    def __init__(self, target: Target, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _TLSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str, timeout: float, context: ssl.SSLContext):
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    deadline_seconds: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    policy: EgressPolicy | None = None,
    verify: bool | str = True,
) -> Response:
    """One request under the egress policy; raises `EgressError` (`refused` when the policy refused)."""
    started = time.monotonic()
    deadline = started + deadline_seconds
    target = vet(url, policy=policy)
    context: ssl.SSLContext | None = None
    if target.scheme == "https":
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    last_error: Exception | None = None
    for address in target.addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        connection: http.client.HTTPConnection = (
            _TLSConnection(target, address, left, context)
            if context is not None
            else _Connection(target, address, left)
        )
        watchdog = threading.Timer(left, _abort, args=(connection,))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request(method, target.path, body=body, headers={"Connection": "close", **(headers or {})})
            answer = connection.getresponse()
            data, truncated = _read_capped(answer, max_bytes, deadline, connection)
            return Response(
                status=answer.status,
                body=data,
                truncated=truncated,
                headers={k.lower(): v for k, v in answer.getheaders()},
                elapsed_ms=int((time.monotonic() - started) * 1000),
            )
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error = exc
            if time.monotonic() >= deadline:
                raise EgressError(f"no complete answer within {deadline_seconds:g} s") from exc
            if isinstance(exc, ConnectionRefusedError | socket.timeout):
                continue  # try the next vetted address
            raise EgressError(f"cannot reach {target.host}: {_describe(exc)}") from exc
        finally:
            watchdog.cancel()
            connection.close()
    if last_error is not None:
        raise EgressError(f"cannot reach {target.host}: {_describe(last_error)}") from last_error
    raise EgressError(f"no complete answer within {deadline_seconds:g} s")


def post(url: str, *, body: bytes, headers: dict[str, str] | None = None, **options: Any) -> Response:
    return request("POST", url, body=body, headers=headers, **options)


def _read_capped(
    answer: http.client.HTTPResponse, max_bytes: int, deadline: float, connection: http.client.HTTPConnection
) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size < max_bytes:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline")
        if connection.sock is not None:
            connection.sock.settimeout(left)
        piece = (
            answer.read1(min(16 * 1024, max_bytes - size))
            if hasattr(answer, "read1")
            else answer.read(min(16 * 1024, max_bytes - size))
        )
        if not piece:
            if time.monotonic() >= deadline:  # the watchdog closed the socket
                raise TimeoutError("deadline")
            return b"".join(chunks), False
        chunks.append(piece)
        size += len(piece)
    # At the cap: one more byte tells a complete body from a truncated one; the rest is never read.
    try:
        more = answer.read1(1)
    except (OSError, http.client.HTTPException):
        more = b"?"
    return b"".join(chunks), bool(more)


def _abort(connection: http.client.HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _describe(exc: BaseException) -> str:
    return shown(f"{type(exc).__name__}: {exc}", 200)


__all__ = [
    "EgressError",
    "EgressPolicy",
    "EgressRefused",
    "Response",
    "configured_policy",
    "post",
    "request",
    "shown",
    "vet",
    "why_refused",
]

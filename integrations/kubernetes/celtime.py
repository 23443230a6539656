"""Time values of CRD validation rules: CEL timestamps and the string formats Kubernetes types.

kube-apiserver hands a rule the value of a `type: string` schema node as a typed CEL value when the
node declares a format (``k8s.io/apiserver/pkg/cel/common/values.go``):

- ``format: duration``: a ``google.protobuf.Duration``, parsed as go-openapi's ``strfmt.ParseDuration``
  parses it (Go's ``time.ParseDuration`` syntax, else ``<n> <unit>`` groups such as ``3 days``);
- ``format: date-time``: a ``google.protobuf.Timestamp`` (``strfmt.ParseDateTime``: RFC 3339 and the
  looser ISO 8601 layouts it lists, local times read as UTC);
- ``format: date``: a timestamp at midnight UTC (``2006-01-02``);
- ``format: byte``: ``bytes``, the base64-decoded string.

A value that does not parse is an error wherever a rule reads it. ``timestamp()`` in a rule parses
RFC 3339 as cel-go does. Parsers raise ValueError; the evaluator turns that into a CEL error.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

NANOS = 10**9
# The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_SECONDS = -62135596800
MAX_SECONDS = 253402300799
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Timestamp:
    """A point in time: nanoseconds since the Unix epoch (UTC)."""

    nanos: int

    def __post_init__(self) -> None:
        if not MIN_SECONDS * NANOS <= self.nanos <= MAX_SECONDS * NANOS + NANOS - 1:
            raise ValueError("timestamp out of range")

    @property
    def seconds(self) -> int:
        return self.nanos // NANOS

    def in_zone(self, zone: tzinfo) -> datetime:
        """The wall-clock time in `zone` (microsecond precision; nanoseconds are kept apart)."""
        return (_EPOCH + timedelta(seconds=self.seconds)).astimezone(zone)

    def __str__(self) -> str:
        """RFC 3339 in UTC with as many fractional digits as needed, as cel-go's string(timestamp)."""
        text = (_EPOCH + timedelta(seconds=self.seconds)).strftime("%Y-%m-%dT%H:%M:%S")
        fraction = self.nanos % NANOS
        return f"{text}.{fraction:09d}".rstrip("0") + "Z" if fraction else f"{text}Z"


@dataclass(frozen=True)
class Invalid:
    """A format-typed value that does not parse: reading it in a rule is this error."""

    message: str


# --- parsing --------------------------------------------------------------------------------------

_DATE = r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
_CLOCK = r"(?P<hour>\d{2}):(?P<minute>\d{2})"
_SECONDS = r":(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?"
_OFFSET = r"(?P<zone>Z|[+-]\d{2}:\d{2})"
_RFC3339 = re.compile(rf"^{_DATE}T{_CLOCK}{_SECONDS}{_OFFSET}$")
# strfmt.DateTimeFormats beyond RFC 3339: offsets without colon (after exactly 3 or 6 fractional
# digits), local times (read as UTC), minutes precision, and a space instead of the T.
_DATE_TIME_LAYOUTS = (
    _RFC3339,
    re.compile(rf"^{_DATE}T{_CLOCK}:(?P<second>\d{{2}})\.(?P<fraction>\d{{3}}|\d{{6}})(?P<zone>Z|[+-]\d{{4}})$"),
    re.compile(rf"^{_DATE}T{_CLOCK}{_SECONDS}$"),
    re.compile(rf"^{_DATE}T{_CLOCK}Z$"),
    re.compile(rf"^{_DATE}T{_CLOCK}$"),
    re.compile(rf"^{_DATE} {_CLOCK}{_SECONDS}$"),
)
_DATE_ONLY = re.compile(rf"^{_DATE}$")


def _from_match(match: re.Match[str]) -> Timestamp:
    parts = match.groupdict()
    zone = parts.get("zone") or "Z"
    offset = 0
    if zone != "Z":
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise ValueError("time zone offset out of range")
        offset = (hours * 60 + minutes) * 60 * (-1 if zone[0] == "-" else 1)
    moment = datetime(
        int(parts["year"]),
        int(parts["month"]),
        int(parts["day"]),
        int(parts.get("hour") or 0),
        int(parts.get("minute") or 0),
        int(parts.get("second") or 0),
        tzinfo=UTC,
    )
    seconds = calendar.timegm(moment.utctimetuple()) - offset
    fraction = (parts.get("fraction") or "")[:9].ljust(9, "0")
    return Timestamp(seconds * NANOS + int(fraction))


def parse_rfc3339(text: str) -> Timestamp:
    """cel-go's timestamp(string): Go's time.Parse(time.RFC3339, text)."""
    match = _RFC3339.match(text)
    if not match:
        raise ValueError(f'parsing time "{text}" as RFC 3339')
    return _from_match(match)


def parse_date_time(text: str) -> Timestamp:
    """strfmt.ParseDateTime (the `date-time` format): "" is the Unix epoch."""
    if text == "":
        return Timestamp(0)
    for layout in _DATE_TIME_LAYOUTS:
        match = layout.match(text)
        if match:
            try:
                return _from_match(match)
            except ValueError:
                break  # a day, month or offset out of range
    raise ValueError(f"Invalid date-time formatted string {text}")


def parse_date(text: str) -> Timestamp:
    match = _DATE_ONLY.match(text)
    try:
        if match:
            return _from_match(match)
    except ValueError:
        pass
    raise ValueError(f"Invalid date formatted string {text}")


_OPENAPI_DURATION = re.compile(r"((\d+)\s*([A-Za-zµ]+))")
_OPENAPI_UNITS: tuple[tuple[tuple[str, ...], int], ...] = (
    (("ns", "nano"), 1),
    (("us", "µs", "micro"), 1_000),
    (("ms", "milli"), 1_000_000),
    (("s", "sec"), NANOS),
    (("m", "min"), 60 * NANOS),
    (("h", "hr", "hour"), 3600 * NANOS),
    (("d", "day"), 24 * 3600 * NANOS),
    (("w", "wk", "week"), 7 * 24 * 3600 * NANOS),
)


def parse_openapi_duration(text: str, go_duration: Callable[[str], int]) -> int:
    """strfmt.ParseDuration (the `duration` format), in nanoseconds: Go's syntax first (`go_duration`),
    else every `<digits><unit>` group (`3 days`, `1hour 5min`); a unit is one of a list's names, or
    starts with its last, longest name."""
    try:
        return go_duration(text)
    except Exception:  # noqa: BLE001 - any refusal of the Go syntax falls back to the loose one
        pass
    total, found = 0, False
    for _, amount, unit in _OPENAPI_DURATION.findall(text):
        unit = unit.strip().lower()
        for names, multiplier in _OPENAPI_UNITS:
            for position, name in enumerate(names):
                if (position == len(names) - 1 and unit.startswith(name)) or name == unit:
                    found = True
                    total += int(amount) * multiplier
    if not found:
        raise ValueError(f"Invalid duration {text}: unable to parse {text} as duration")
    return total


def decode_byte(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"Invalid byte formatted string {text}") from None


def zone(name: str) -> tzinfo:
    """A CEL time zone argument: an IANA name ("America/New_York", "UTC") or a fixed offset ("+05:30")."""
    offset = re.fullmatch(r"([+-])(\d{2}):(\d{2})", name)
    if offset:
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3)))
        return timezone(-delta if offset.group(1) == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None

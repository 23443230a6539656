"""A change's status as a server-sent event stream: what `status/?wait=` answers, pushed.

`GET /api/v1/changes/{id}/events/stream/` (`text/event-stream`) sends an `event: status` whenever
the status's `version` moves, with `id:` set to that version, so a client that reconnects with
`Last-Event-ID` (EventSource does so by itself) is sent nothing it already has. Comment lines
(`: heartbeat`) keep proxies from closing an idle stream. The stream ends with an `event: end`
whose data says why: `done` (the change reached a final state), `timeout` (the stream's bounded
duration is over: reconnect with `Last-Event-ID`) or `gone` (the change is no longer visible).

Each open stream holds a web worker (a gunicorn sync worker, or a thread with `--threads`) for at
most `MESHGATE_EVENT_STREAM_SECONDS` (default 50, below gunicorn's default `--timeout` of 60 that
would otherwise kill a sync worker mid-stream); `?timeout=` may ask for less. Same authentication
(session or a token with the read scope) and visibility as `status/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import renderers, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.views import APIView

from policies import selectors
from policies.api.changes import ERRORS, STATUS_POLL_SECONDS, ChangeStatusSerializer, change_status

RETRY_MILLISECONDS = 2000  # how long EventSource waits before it reconnects


class ErrorsAsJson(BaseContentNegotiation):
    """Whatever the client accepts (EventSource sends `Accept: text/event-stream`), an error answer
    (400, 401, 403, 404) is the API's JSON error shape; a 200 is always the event stream."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> tuple[Any, str]:
        return renderers[0], renderers[0].media_type


def sse(*, data: Any, event: str, id: str | None = None) -> str:
    """One event in the text/event-stream format (the data is one line of JSON)."""
    head = f"event: {event}\n" + (f"id: {id}\n" if id is not None else "")
    return f"{head}data: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


# One server-sent event of the stream as its fields (what an EventSource hands its listener); a raw
# schema, since a serializer cannot have a field called `data`.
STREAM_EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["status", "end"]},
        "id": {"type": "string", "description": "On `status` events: the status `version`."},
        "data": {
            "type": "string",
            "description": "JSON: the status body of `status/` (`status`), or `{reason: done|timeout|gone}` (`end`).",
        },
        "retry": {"type": "integer", "description": "Milliseconds before an EventSource reconnects."},
    },
}


class StreamParamsSerializer(serializers.Serializer):
    timeout = serializers.IntegerField(min_value=1, required=False)

    def validate_timeout(self, value: int) -> int:
        limit = settings.MESHGATE_EVENT_STREAM_SECONDS
        if value > limit:
            raise serializers.ValidationError(f"at most {limit} seconds (MESHGATE_EVENT_STREAM_SECONDS)")
        return value


def status_events(*, user: User | AnonymousUser, pk: int, last_event_id: str, seconds: float) -> Iterator[str]:
    """Status events until the change is done, invisible, or `seconds` have passed."""
    deadline = time.monotonic() + seconds
    heartbeat = settings.MESHGATE_EVENT_STREAM_HEARTBEAT_SECONDS
    next_beat = time.monotonic() + heartbeat
    sent = last_event_id
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    while True:
        change = selectors.change_list(user=user).filter(pk=pk).first()
        if change is None:
            yield sse(event="end", data={"reason": "gone"})
            return
        data = change_status(change)
        if data["version"] != sent:
            sent = data["version"]
            yield sse(event="status", id=sent, data=ChangeStatusSerializer(data).data)
            next_beat = time.monotonic() + heartbeat
        if data["done"]:
            yield sse(event="end", data={"reason": "done", "outcome": data["outcome"], "state": data["state"]})
            return
        now = time.monotonic()
        if now >= deadline:
            yield sse(event="end", data={"reason": "timeout"})
            return
        if now >= next_beat:
            yield ": heartbeat\n\n"
            next_beat = now + heartbeat
        time.sleep(min(STATUS_POLL_SECONDS, max(0.0, deadline - now)))


class ChangeEventStreamView(APIView):
    """The change's status as server-sent events: an alternative to `status/?wait=` for clients that
    keep a connection open (EventSource, `curl -N`). Bounded: it ends after at most
    `MESHGATE_EVENT_STREAM_SECONDS`; reconnect with `Last-Event-ID` to go on."""

    renderer_classes = [renderers.JSONRenderer]
    content_negotiation_class = ErrorsAsJson

    @extend_schema(
        operation_id="changes_events_stream",
        summary="Follow a change's status as server-sent events",
        parameters=[
            OpenApiParameter(
                "timeout",
                OpenApiTypes.INT,
                OpenApiParameter.QUERY,
                description="Seconds before the stream ends (at most MESHGATE_EVENT_STREAM_SECONDS, the default).",
            ),
            OpenApiParameter(
                "Last-Event-ID",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="The `id` of the last event received (a status `version`): it is not sent again.",
            ),
        ],
        responses={
            (status.HTTP_200_OK, "text/event-stream"): OpenApiResponse(
                STREAM_EVENT_SCHEMA,
                description="`event: status` (id: the version; data: the status JSON of `status/`), "
                "`: heartbeat` comments, and a last `event: end` with data `{reason: done|timeout|gone}`.",
            ),
            **{code: ERRORS[code] for code in (400, 401, 403, 404)},
        },
    )
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        params = StreamParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        get_object_or_404(selectors.change_list(user=request.user), pk=pk)
        seconds = params.validated_data.get("timeout", settings.MESHGATE_EVENT_STREAM_SECONDS)
        last_event_id = request.headers.get("Last-Event-ID", "")[:64]
        response = StreamingHttpResponse(
            status_events(user=request.user, pk=pk, last_event_id=last_event_id, seconds=seconds),
            content_type="text/event-stream; charset=utf-8",
        )
        response["Cache-Control"] = "no-cache, no-store"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response

"""A change's status as server-sent events, over real HTTP against the live test server: each move
of the status arrives as an event whose id is the status version, Last-Event-ID resumes without a
repeat, heartbeats keep an idle stream open, the stream ends when the change is done or its bounded
time is over, and it has the status endpoint's authentication and visibility."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from policies.api.changes import change_status
from policies.services.changes import change_create, change_reject
from policies.services.drafts import draft_delete_policy
from policies.services.reviews import review_request_changes
from portal.choices import TokenScope
from tests.api_testing import BEARER_CHALLENGE, stored_token, token_for
from tests.policies.changes.helpers import cluster_org, submitted_change  # noqa: F401 - fixture

READ_TIMEOUT = 30  # a safety net so a broken stream fails the test instead of hanging it


class EventStream:
    """Reads a text/event-stream answer event by event (the fields of each as a dict)."""

    def __init__(self, response: requests.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        self.response = response
        self._lines: Iterator[str] = response.iter_lines(chunk_size=1, decode_unicode=True)

    def next(self) -> dict[str, str]:
        """The next event or comment block; raises StopIteration when the server has closed."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line == "":
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                fields["comment"] = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if fields:
            return fields
        raise StopIteration

    def next_event(self) -> dict[str, str]:
        """The next named event, past the `retry:` hint and heartbeats."""
        while True:
            fields = self.next()
            if "event" in fields:
                return fields

    def rest(self) -> list[dict[str, str]]:
        blocks = []
        while True:
            try:
                blocks.append(self.next())
            except StopIteration:
                return blocks


def stream_url(live_server, pk: int) -> str:
    return f"{live_server.url}/api/v1/changes/{pk}/events/stream/"


def open_stream(url: str, token: str | None, *, last_event_id: str | None = None, **params) -> requests.Response:
    headers = {"Accept": "text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    return requests.get(url, headers=headers, params=params, stream=True, timeout=(10, READ_TIMEOUT))


@pytest.fixture
def alice_token(cluster_org):
    return token_for(cluster_org.author, scopes=[TokenScope.READ])


def test_each_move_of_the_status_is_an_event_until_the_change_is_done(live_server, cluster_org, alice_token):
    org = cluster_org
    change = submitted_change(org)
    with open_stream(stream_url(live_server, change.pk), alice_token) as response:
        stream = EventStream(response)
        assert response.headers["Cache-Control"] == "no-cache, no-store"
        assert stream.next() == {"retry": "2000"}

        first = stream.next_event()
        assert first["event"] == "status"
        body = json.loads(first["data"])
        assert (body["id"], body["state"], body["done"], body["outcome"]) == (change.pk, "in_review", False, "pending")
        assert first["id"] == body["version"]

        review_request_changes(reviewer=org.approver, change=change, body="use 3s")
        second = stream.next_event()
        assert second["event"] == "status"
        assert json.loads(second["data"])["state"] == "changes_requested"
        assert second["id"] != first["id"]

        change.refresh_from_db()
        change_reject(actor=org.approver, change=change, reason="not now")
        third = stream.next_event()
        assert third["event"] == "status"
        assert json.loads(third["data"])["outcome"] == "failed"
        end = stream.next_event()
        assert end["event"] == "end"
        assert json.loads(end["data"]) == {"reason": "done", "outcome": "failed", "state": "rejected"}
        assert stream.rest() == []  # the server closed the stream


def test_last_event_id_resumes_without_a_repeat_and_heartbeats_keep_it_open(
    live_server, cluster_org, alice_token, settings
):
    settings.MESHGATE_EVENT_STREAM_HEARTBEAT_SECONDS = 0.2
    org = cluster_org
    change = submitted_change(org)
    known = change_status(change)["version"]
    with open_stream(stream_url(live_server, change.pk), alice_token, last_event_id=known) as response:
        stream = EventStream(response)
        assert stream.next() == {"retry": "2000"}
        assert stream.next() == {"comment": "heartbeat"}  # nothing new yet: no status is sent again

        review_request_changes(reviewer=org.approver, change=change, body="use 3s")
        moved = stream.next_event()
        assert moved["event"] == "status" and moved["id"] != known
        assert json.loads(moved["data"])["state"] == "changes_requested"

    # a client that missed that event gets the current status at once
    with open_stream(stream_url(live_server, change.pk), alice_token, last_event_id=known, timeout=1) as response:
        caught_up = EventStream(response).next_event()
        assert caught_up["event"] == "status" and caught_up["id"] == moved["id"]


def test_a_done_change_with_its_last_version_only_ends(live_server, cluster_org, alice_token):
    org = cluster_org
    change = change_reject(actor=org.approver, change=submitted_change(org), reason="no")
    version = change_status(change)["version"]
    with open_stream(stream_url(live_server, change.pk), alice_token, last_event_id=version) as response:
        events = [block for block in EventStream(response).rest() if "event" in block]
    assert [(event["event"], json.loads(event["data"])["reason"]) for event in events] == [("end", "done")]


def test_the_stream_ends_when_its_bounded_time_is_over(live_server, cluster_org, alice_token, settings):
    settings.MESHGATE_EVENT_STREAM_SECONDS = 1
    change = submitted_change(cluster_org)
    with open_stream(stream_url(live_server, change.pk), alice_token) as response:
        events = [block for block in EventStream(response).rest() if "event" in block]
    assert [event["event"] for event in events] == ["status", "end"]
    assert json.loads(events[-1]["data"]) == {"reason": "timeout"}


@pytest.mark.parametrize(
    ("timeout", "message"), [("0", "greater than or equal to 1"), ("61", "at most 50 seconds"), ("x", "valid integer")]
)
def test_a_bad_timeout_is_a_400_saying_so(live_server, cluster_org, alice_token, timeout, message):
    change = submitted_change(cluster_org)
    response = open_stream(stream_url(live_server, change.pk), alice_token, timeout=timeout)
    assert response.status_code == 400
    # it asked for events (Accept: text/event-stream), yet the error is the API's JSON error shape
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()
    assert error["code"] == "invalid" and message in json.dumps(error["details"]["timeout"])


def test_anonymous_and_tokens_without_read_are_refused(live_server, cluster_org):
    change = submitted_change(cluster_org)
    anonymous = requests.get(stream_url(live_server, change.pk), timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == BEARER_CHALLENGE
    assert anonymous.json()["code"] == "not_authenticated"
    _, no_scope = stored_token(cluster_org.author, scopes=[])
    refused = requests.get(
        stream_url(live_server, change.pk), headers={"Authorization": f"Bearer {no_scope}"}, timeout=10
    )
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"


def test_another_teams_change_and_a_missing_one_are_not_found(live_server, cluster_org, alice_token):
    org = cluster_org
    draft = draft_delete_policy(author=org.other, policy=org.policy_b)
    shop = change_create(author=org.other, environment=org.env, drafts=[draft], title="Retire payments")
    for pk in (shop.pk, 99999):
        response = requests.get(
            stream_url(live_server, pk), headers={"Authorization": f"Bearer {alice_token}"}, timeout=10
        )
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    carol = token_for(org.other, scopes=[TokenScope.READ])
    with open_stream(stream_url(live_server, shop.pk), carol, timeout=1) as response:
        assert json.loads(EventStream(response).next_event()["data"])["id"] == shop.pk

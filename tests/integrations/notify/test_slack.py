import json

from integrations.notify.slack import send_slack, slack_message


def test_slack_message_has_text_fallback_and_blocks():
    message = slack_message(
        event="rollout.rolled_back",
        subject="Rollout of reviews rolled back",
        body="p99 > 500ms <script>",
        url="https://meshgate.example/rollouts/3/",
        fields={"environment": "prod", "step": "25%"},
    )
    assert message["text"] == "<https://meshgate.example/rollouts/3/|Rollout of reviews rolled back>"
    types = [block["type"] for block in message["blocks"]]
    assert types == ["header", "section", "section", "actions", "context"]
    assert message["blocks"][0]["text"] == {
        "type": "plain_text",
        "text": "Rollout of reviews rolled back",
        "emoji": False,
    }
    assert message["blocks"][1]["text"]["type"] == "mrkdwn"
    assert "&lt;script&gt;" in message["blocks"][1]["text"]["text"]  # mrkdwn control characters escaped
    assert {"type": "mrkdwn", "text": "*environment*\nprod"} in message["blocks"][2]["fields"]
    assert message["blocks"][3]["elements"][0]["url"] == "https://meshgate.example/rollouts/3/"
    assert "rollout.rolled_back" in message["blocks"][4]["elements"][0]["text"]


def test_slack_message_without_url_or_fields():
    message = slack_message(event="drift.detected", subject="Drift", body="")
    assert message["text"] == "Drift"
    assert [block["type"] for block in message["blocks"]] == ["header", "context"]


def test_send_slack_posts_json(receiver_factory):
    receiver = receiver_factory()
    send_slack(url=receiver.url, message=slack_message(event="e", subject="Hello", body="World"))
    seen = receiver.requests[0]
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body)["text"] == "Hello"

import pytest
from django.core import mail

from integrations.notify import NotifyError
from integrations.notify.email import send_email


def test_send_email_uses_django_mail():
    send_email(
        to="ops@example.com",
        subject="Change approved",
        body="bookinfo/reviews approved",
        url="https://meshgate.example/changes/1/",
        event="change.approved",
    )
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject == "[Meshgate] Change approved"
    assert "https://meshgate.example/changes/1/" in message.body
    assert message.extra_headers["X-Meshgate-Event"] == "change.approved"


def test_a_bad_address_is_not_retried():
    with pytest.raises(NotifyError) as caught:
        send_email(to="not-an-address", subject="s", body="b")
    assert not caught.value.retryable

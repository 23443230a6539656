"""Email through Django's mail API (whatever EMAIL_BACKEND the deployment configures)."""

from __future__ import annotations

import smtplib

from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email

from integrations.notify import DeliveryReceipt, NotifyError

SUBJECT_PREFIX = "[Meshgate] "


def send_email(*, to: str, subject: str, body: str, url: str = "", event: str = "") -> DeliveryReceipt:
    try:
        validate_email(to)
    except ValidationError as exc:
        raise NotifyError(f"{to!r} is not an email address", retryable=False) from exc
    text = body + (f"\n\n{url}\n" if url else "\n")
    message = EmailMessage(
        subject=(SUBJECT_PREFIX + subject.replace("\n", " "))[:250],
        body=text,
        to=[to],
        headers={"X-Meshgate-Event": event} if event else None,
    )
    try:
        sent = message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise NotifyError(f"the mail server refused {to}: {exc}", retryable=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyError(f"cannot send mail: {exc}") from exc
    if not sent:
        raise NotifyError("the mail backend sent nothing")
    return DeliveryReceipt()

import pytest


@pytest.fixture
def fast_retries(monkeypatch):
    """Short backoff and three attempts, for this process and for a worker started after it."""
    monkeypatch.setenv("MESHGATE_NOTIFY_RETRY_BASE_SECONDS", "0.2")
    monkeypatch.setenv("MESHGATE_NOTIFY_RETRY_MAX_SECONDS", "1")
    monkeypatch.setenv("MESHGATE_NOTIFY_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("MESHGATE_NOTIFY_TIMEOUT_SECONDS", "5")


@pytest.fixture
def enqueued(monkeypatch):
    """The delivery ids handed to `deliver_notification.delay` (no broker involved)."""
    from policies.tasks import deliver_notification

    ids = []
    monkeypatch.setattr(deliver_notification, "delay", lambda delivery_id: ids.append(delivery_id))
    return ids

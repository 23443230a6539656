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
    """The delivery ids sent as `deliver_notification` jobs (no broker involved)."""
    from policies import jobs

    ids = []
    send = jobs.send

    def record(name, args, countdown=None):
        if name == jobs.deliver_notification.name:
            ids.append(*args)
        else:
            send(name, args, countdown=countdown)

    monkeypatch.setattr(jobs, "send", record)
    return ids

import pytest

from tests.integrations.notify.receiver import start_receiver


@pytest.fixture
def receiver_factory():
    servers = []

    def make(script=None, default=200):
        receiver, server = start_receiver(script, default)
        servers.append(server)
        return receiver

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()

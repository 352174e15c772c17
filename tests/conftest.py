"""Shared test setup: the suite runs offline, like a learner after `make lab`."""

import os
import socket

import pytest

# Nothing in the tests may reach the Hugging Face Hub.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture
def no_network(monkeypatch):
    """Cut the network for one test: any attempt to open a connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)

"""Unit tests touch no network: a connect() outside loopback-free pure code fails loudly."""

import socket

import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(self, address, *args, **kwargs):
        raise AssertionError(f"unit test tried to connect to {address}; mark it integration and move it")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)

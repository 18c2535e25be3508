"""Session-scoped real servers, started the way `make up` starts them, on free ports.

Tansu and ClickHouse are our own instances in a temporary run directory (so a running
`make up` stack is never touched); RabbitMQ and Redis are the machine's when running, else
started here and stopped at the end.
"""

from __future__ import annotations


import pytest

from devstack.private import private_stack


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with private_stack(tmp_path_factory.mktemp("run")) as private:
        yield private.as_dict()


@pytest.fixture
def clickhouse_client(stack):
    from streams.sink.clickhouse import connect

    client = connect(stack["settings"])
    yield client
    client.disconnect()

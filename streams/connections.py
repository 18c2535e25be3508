"""Connection options for every client library, from the one settings model (streams.config).

The pipeline talks to Kafka through three libraries -- librdkafka (confluent-kafka: the bridge's
producer, the streams worker's outbox, the sink, read-backs, the admin client), aiokafka
(inside Faust: group membership, table recovery) and kafka-python (test and dev tooling) -- and to
ClickHouse through clickhouse-driver. Security settings (TLS, SASL PLAIN/SCRAM, ClickHouse TLS and
credentials) are turned into each library's options here and nowhere else, so a setting means
the same thing to every client: a cluster that needs SASL_SSL gets SASL_SSL from all of them.

    librdkafka_options(settings)   -> {"bootstrap.servers": ..., "security.protocol": "sasl_ssl", ...}
    faust_credentials(settings)    -> faust.SASLCredentials | faust.SSLCredentials | None
    kafka_python_options(settings) -> {"bootstrap_servers": [...], "security_protocol": "SASL_SSL", ...}
    clickhouse_options(settings)   -> keyword arguments of clickhouse_driver.Client
"""

from __future__ import annotations

import ssl
from typing import Any

from .config import Settings


def librdkafka_options(settings: Settings) -> dict[str, Any]:
    """Options of a confluent-kafka Producer/Consumer/AdminClient (librdkafka's dotted names); its
    own log lines go through the ``librdkafka`` logger, the same message at most once a minute."""
    from .logs import librdkafka_logger

    s = settings
    options: dict[str, Any] = {"bootstrap.servers": s.kafka_bootstrap, "security.protocol": s.kafka_security_protocol.lower(),
                               "logger": librdkafka_logger()}  # fmt: skip
    if s.kafka_security_protocol.startswith("SASL"):
        options.update({
            "sasl.mechanism": s.kafka_sasl_mechanism,
            "sasl.username": s.kafka_sasl_username,
            "sasl.password": s.secret("kafka_sasl_password"),
        })  # fmt: skip
    if s.kafka_security_protocol.endswith("SSL"):
        if s.kafka_ssl_cafile:
            options["ssl.ca.location"] = s.kafka_ssl_cafile
        if s.kafka_ssl_certfile:
            options["ssl.certificate.location"] = s.kafka_ssl_certfile
            options["ssl.key.location"] = s.kafka_ssl_keyfile
            if s.secret("kafka_ssl_key_password"):
                options["ssl.key.password"] = s.secret("kafka_ssl_key_password")
        options["ssl.endpoint.identification.algorithm"] = "https" if s.kafka_ssl_check_hostname else "none"
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of Python Kafka clients (aiokafka): the same CA, client certificate and
    host-name check librdkafka gets."""
    from aiokafka.helpers import create_ssl_context

    s = settings
    context = create_ssl_context(
        cafile=s.kafka_ssl_cafile or None,
        certfile=s.kafka_ssl_certfile or None,
        keyfile=s.kafka_ssl_keyfile or None,
        password=s.secret("kafka_ssl_key_password") or None,
    )
    context.check_hostname = s.kafka_ssl_check_hostname
    if not s.kafka_ssl_check_hostname:
        context.verify_mode = ssl.CERT_REQUIRED  # still verify the chain; only the name is not checked
    return context


def faust_credentials(settings: Settings):
    """``broker_credentials`` of the Faust app (aiokafka underneath); None for PLAINTEXT."""
    import faust

    s = settings
    protocol = s.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(s) if protocol.endswith("SSL") else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.kafka_sasl_username,
            password=s.secret("kafka_sasl_password"),
            ssl_context=context,
            mechanism=s.kafka_sasl_mechanism,
        )
    return faust.SSLCredentials(context)


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of kafka-python clients (the test and dev tooling's consumers)."""
    s = settings
    options: dict[str, Any] = {"bootstrap_servers": s.kafka_bootstrap.split(","), "security_protocol": s.kafka_security_protocol}
    if s.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=s.kafka_sasl_mechanism,
            sasl_plain_username=s.kafka_sasl_username,
            sasl_plain_password=s.secret("kafka_sasl_password"),
        )
    if s.kafka_security_protocol.endswith("SSL"):
        if s.kafka_ssl_cafile:
            options["ssl_cafile"] = s.kafka_ssl_cafile
        if s.kafka_ssl_certfile:
            options.update(ssl_certfile=s.kafka_ssl_certfile, ssl_keyfile=s.kafka_ssl_keyfile)
            if s.secret("kafka_ssl_key_password"):
                options["ssl_password"] = s.secret("kafka_ssl_key_password")
        options["ssl_check_hostname"] = s.kafka_ssl_check_hostname
    return options


def clickhouse_options(settings: Settings, with_database: bool = True) -> dict[str, Any]:
    """Keyword arguments of clickhouse_driver.Client: host, port, credentials and TLS."""
    s = settings
    options: dict[str, Any] = {
        "host": s.clickhouse_host,
        "port": s.clickhouse_port,
        "user": s.clickhouse_user,
        "password": s.secret("clickhouse_password"),
        "database": s.clickhouse_database if with_database else "default",
        "secure": s.clickhouse_secure,
    }
    if s.clickhouse_secure:
        options["verify"] = s.clickhouse_verify
        if s.clickhouse_ca_certs:
            options["ca_certs"] = s.clickhouse_ca_certs
    return options

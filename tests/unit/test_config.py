"""The settings model: precedence, strict values with errors naming the variable, secrets, one
meaning per security setting for every client library, and docs/configuration.md in sync."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from streams.cli import cli
from streams.config import ConfigError, Settings, mask_url, settings_markdown, unknown_variables
from streams.connections import clickhouse_options, faust_credentials, kafka_python_options, librdkafka_options

ROOT = Path(__file__).resolve().parents[2]


def test_precedence_flag_over_env_over_default():
    assert Settings.load(environ={}).topic_partitions == 8
    assert Settings.load(environ={"TOPIC_PARTITIONS": "4"}).topic_partitions == 4
    assert Settings.load({"topic_partitions": "2"}, environ={"TOPIC_PARTITIONS": "4"}).topic_partitions == 2
    assert Settings.load({"topic_partitions": None}, environ={"TOPIC_PARTITIONS": "4"}).topic_partitions == 4
    assert Settings.load(environ={"CLICKHOUSE_SECURE": "true"}).clickhouse_secure is True
    assert Settings.load(environ={"CLICKHOUSE_SECURE": ""}).clickhouse_secure is False  # empty = unset


def test_production_defaults():
    s = Settings.load(environ={})
    assert (s.kafka_flavor, s.tansu_fixes) == ("kafka", False)
    assert (s.topic_replication_factor, s.topic_min_insync_replicas) == (3, 2)
    assert s.group_session_timeout == 45.0
    assert Settings.load(environ={"KAFKA_FLAVOR": "tansu"}).group_session_timeout == 6.0
    assert Settings.load(environ={"KAFKA_FLAVOR": "tansu", "STREAMS_SESSION_TIMEOUT": "3"}).group_session_timeout == 3.0


@pytest.mark.parametrize(
    "env, names",
    [
        ({"STREAMS_SINK": "proces"}, ["STREAMS_SINK", "'process', 'inline' or 'off'"]),
        ({"KAFKA_FLAVOR": "redpanda"}, ["KAFKA_FLAVOR", "'kafka' or 'tansu'"]),
        ({"BROKER_SSL": "ture"}, ["BROKER_SSL", "boolean"]),
        ({"CLICKHOUSE_SECURE": "2"}, ["CLICKHOUSE_SECURE", "boolean"]),
        ({"TOPIC_PARTITIONS": "0"}, ["TOPIC_PARTITIONS", "greater than or equal to 1"]),
        ({"TOPIC_PARTITIONS": "eight"}, ["TOPIC_PARTITIONS", "integer"]),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, ["KAFKA_SECURITY_PROTOCOL", "'SASL_SSL'"]),
        ({"STREAMS_STORE": "redis://"}, ["STREAMS_STORE", "memory:// or rocksdb://"]),
        ({"CLICKHOUSE_DATABASE": "celery; DROP TABLE x"}, ["CLICKHOUSE_DATABASE", "identifier"]),
        ({"BRIDGE_REDACT_FIELDS": "args,secrets"}, ["BRIDGE_REDACT_FIELDS", "secrets"]),
        ({"BRIDGE_METRICS_ADDR": "127.0.0.1"}, ["BRIDGE_METRICS_ADDR", "host:port"]),
        ({"BRIDGE_EVENT_EXCHANGE": "celery ev"}, ["BRIDGE_EVENT_EXCHANGE", "pattern"]),
        ({"KAFKA_BOOTSTRAP": "kafka1"}, ["KAFKA_BOOTSTRAP", "host:port"]),
        ({"TOPIC_REPLICATION_FACTOR": "1"}, ["TOPIC_MIN_INSYNC_REPLICAS (2) is above TOPIC_REPLICATION_FACTOR (1)"]),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, ["KAFKA_SASL_USERNAME"]),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(env, names):
    with pytest.raises(ConfigError) as error:
        Settings.load(environ=env)
    for name in names:
        assert name in str(error.value), str(error.value)


def test_a_bad_flag_names_the_flag_and_a_replace_is_validated():
    with pytest.raises(ConfigError, match="--sink='bad'"):
        Settings.load({"sink": "bad"}, environ={})
    with pytest.raises(ConfigError, match="'process', 'inline' or 'off'"):
        Settings.load(environ={}).replace(sink="nope")
    assert Settings.load(environ={}).replace(sink="inline").sink == "inline"


def test_choices_are_case_insensitive_where_the_clients_are():
    s = Settings.load(environ={"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "scram-sha-256",
                               "KAFKA_SASL_USERNAME": "u", "STREAMS_SINK": "OFF"})  # fmt: skip
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism, s.sink) == ("SASL_SSL", "SCRAM-SHA-256", "off")


def test_secrets_never_in_logs_repr_or_the_config_command():
    env = {"CLICKHOUSE_PASSWORD": "hunter2", "CELERY_BROKER_URL": "amqp://u:pw@h:5672//", "KAFKA_SASL_PASSWORD": "s3cret",
           "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u", "UI_TOKEN": "tok-73", "UI_BASIC_AUTH": "adm:pw-41"}  # fmt: skip
    s = Settings.load(environ=env)
    for text in (str(s.as_dict()), repr(s), str(s)):
        for secret in ("hunter2", ":pw@", "s3cret", "tok-73", "pw-41"):
            assert secret not in text, (secret, text)
    assert "amqp://u:***@h:5672//" in str(s.as_dict())
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert s.secret("clickhouse_password") == "hunter2"
    out = CliRunner().invoke(cli, ["config"], env=env)
    assert out.exit_code == 0 and "hunter2" not in out.output and "s3cret" not in out.output and "CLICKHOUSE_PASSWORD" in out.output
    out = CliRunner().invoke(cli, ["config", "--format", "json"], env=env)
    assert json.loads(out.output)["clickhouse_password"] == "***"
    with pytest.raises(ConfigError) as error:  # nor in an error about them
        Settings.load(environ={**env, "CLICKHOUSE_PORT": "x", "KAFKA_SASL_PASSWORD": ""})
    assert "hunter2" not in str(error.value)


def test_the_config_command_exits_2_naming_the_variable():
    out = CliRunner().invoke(cli, ["config"], env={"STREAMS_SINK": "proces"})
    assert out.exit_code == 2 and "STREAMS_SINK='proces'" in out.output


def test_unknown_variables_with_our_prefixes_are_named_with_a_guess():
    found = unknown_variables({"STREAMS_SINKK": "x", "KAFKA_HEAP_OPTS": "-Xmx1g", "UI_PORT": "1", "PATH": "/bin",
                               "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "CLICKHOUSE_PASS": "x", "CELERY_BROKER": "amqp://",
                               "CLICKHOUSE_DB": "celery", "CELERY_RESULT_BACKEND": "redis://"})  # fmt: skip
    assert found == ["CELERY_BROKER (did you mean CELERY_BROKER_URL?)", "CLICKHOUSE_DB (did you mean CLICKHOUSE_DATABASE?)",
                     "CLICKHOUSE_PASS (did you mean CLICKHOUSE_PASSWORD?)",
                     "KAFKA_BOOTSTRAP_SERVERS (did you mean KAFKA_BOOTSTRAP?)", "STREAMS_SINKK (did you mean STREAMS_SINK?)"]  # fmt: skip


SASL_SSL = {
    "KAFKA_BOOTSTRAP": "k1:9093, k2:9093",
    "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "monitor",
    "KAFKA_SASL_PASSWORD": "s3cret",
    "KAFKA_SSL_CAFILE": "",
}


def test_plaintext_options_for_every_client():
    plain = Settings.load(environ={})
    assert _no_logger(librdkafka_options(plain)) == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "plaintext"}
    assert kafka_python_options(plain) == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    assert faust_credentials(plain) is None


def test_sasl_ssl_means_the_same_to_librdkafka_aiokafka_and_kafka_python():
    s = Settings.load(environ=SASL_SSL)
    assert _no_logger(librdkafka_options(s)) == {
        "bootstrap.servers": "k1:9093,k2:9093",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "monitor",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
    }
    assert kafka_python_options(s) == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "monitor",
        "sasl_plain_password": "s3cret",
        "ssl_check_hostname": True,
    }
    aiokafka = credentials_to_aiokafka_auth(faust_credentials(s))  # what Faust hands aiokafka
    assert (aiokafka["security_protocol"], aiokafka["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (aiokafka["sasl_plain_username"], aiokafka["sasl_plain_password"]) == ("monitor", "s3cret")
    assert aiokafka["ssl_context"].check_hostname is True


def test_sasl_plaintext_and_mutual_tls(tmp_path):
    s = Settings.load(environ={**SASL_SSL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN"})
    auth = credentials_to_aiokafka_auth(faust_credentials(s))
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["ssl_context"]) == ("SASL_PLAINTEXT", "PLAIN", None)
    assert librdkafka_options(s)["security.protocol"] == "sasl_plaintext" and "ssl.ca.location" not in librdkafka_options(s)
    cert, key, ca = _self_signed(tmp_path)
    tls = Settings.load(environ={"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": ca, "KAFKA_SSL_CERTFILE": cert,
                                 "KAFKA_SSL_KEYFILE": key, "KAFKA_SSL_CHECK_HOSTNAME": "false"})  # fmt: skip
    options = librdkafka_options(tls)
    assert (options["ssl.ca.location"], options["ssl.certificate.location"], options["ssl.key.location"]) == (ca, cert, key)
    assert options["ssl.endpoint.identification.algorithm"] == "none"
    assert kafka_python_options(tls)["ssl_certfile"] == cert and kafka_python_options(tls)["ssl_check_hostname"] is False
    auth = credentials_to_aiokafka_auth(faust_credentials(tls))
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"].check_hostname is False
    with pytest.raises(ConfigError, match="KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together"):
        Settings.load(environ={"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": cert})


def test_clickhouse_tls_and_credentials():
    s = Settings.load(environ={"CLICKHOUSE_SECURE": "yes", "CLICKHOUSE_PORT": "9440", "CLICKHOUSE_USER": "monitor",
                               "CLICKHOUSE_PASSWORD": "pw", "CLICKHOUSE_CA_CERTS": "/ca.pem", "CLICKHOUSE_VERIFY": "0"})  # fmt: skip
    assert clickhouse_options(s) == {"host": "127.0.0.1", "port": 9440, "user": "monitor", "password": "pw", "database": "celery",
                                     "secure": True, "verify": False, "ca_certs": "/ca.pem"}  # fmt: skip
    assert clickhouse_options(Settings.load(environ={}), with_database=False)["database"] == "default"


def test_environ_hands_every_setting_to_a_child_process():
    s = Settings.load(environ={"CLICKHOUSE_PASSWORD": "pw", "BROKER_SSL": "1"}, sink="off")
    child = Settings.load(environ=s.environ())
    assert child == s and child.secret("clickhouse_password") == "pw"


def test_docs_configuration_is_generated_from_the_model():
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == settings_markdown(), "regenerate: celery-monitor config --markdown > docs/configuration.md"
    for info in Settings.model_fields.values():
        assert f"`{info.json_schema_extra['env']}`" in documented


def _no_logger(options: dict) -> dict:
    assert options.pop("logger").name == "librdkafka"  # every client logs through the rate-limited logger
    return options


def test_librdkafka_log_lines_are_rate_limited():
    import logging

    from streams.logs import RateLimit

    limit = RateLimit(60)
    records = [logging.LogRecord("librdkafka", 40, "", 0, f"FAIL 127.0.0.1:{port}: Connection refused (after {i}ms)", None, None)
               for i, port in enumerate((9092, 9092, 9093))]  # fmt: skip
    assert [limit.filter(r) for r in records] == [True, False, False]


def _self_signed(tmp_path):
    """A throwaway CA-signed client certificate: files for the options, nothing connects."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))  # fmt: skip
    paths = tmp_path / "cert.pem", tmp_path / "key.pem"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(paths[0]), str(paths[1]), str(paths[0])

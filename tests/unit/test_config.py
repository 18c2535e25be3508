import argparse

from streams.config import Settings, add_arguments, mask_url, settings_table


def test_precedence_flag_over_env_over_default():
    assert Settings.load(environ={}).topic_partitions == 8
    assert Settings.load(environ={"TOPIC_PARTITIONS": "4"}).topic_partitions == 4
    parser = argparse.ArgumentParser()
    add_arguments(parser, ["topic_partitions", "clickhouse_secure"])
    args = parser.parse_args(["--topic-partitions", "2"])
    assert Settings.load(args, environ={"TOPIC_PARTITIONS": "4"}).topic_partitions == 2
    assert Settings.load(environ={"CLICKHOUSE_SECURE": "true"}).clickhouse_secure is True


def test_secrets_never_in_as_dict():
    s = Settings.load(environ={"CLICKHOUSE_PASSWORD": "hunter2", "CELERY_BROKER_URL": "amqp://u:pw@h:5672//"})
    text = str(s.as_dict())
    assert "hunter2" not in text and ":pw@" not in text and "amqp://u:***@h:5672//" in text
    assert mask_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_every_setting_is_documented_in_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for line in settings_table().splitlines()[2:]:
        env = line.split("`")[1]
        assert f"`{env}`" in readme, env


def test_kafka_security_options_reach_every_client_and_stay_secret():
    plain = Settings.load(environ={})
    assert plain.kafka_client_options() == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}
    env = {
        "KAFKA_BOOTSTRAP": "k1:9093,k2:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "monitor",
        "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CAFILE": "/etc/ca.pem",
    }
    s = Settings.load(environ=env)
    assert s.kafka_client_options() == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "monitor",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/ca.pem",
    }
    assert s.librdkafka_options() == {  # the bridge's librdkafka producer
        "bootstrap.servers": "k1:9093,k2:9093",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "monitor",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert "s3cret" not in str(s.as_dict())
    from streams.app import _credentials

    assert _credentials(plain) is None
    credentials = _credentials(Settings.load(environ={**env, "KAFKA_SSL_CAFILE": ""}))
    assert credentials.username == "monitor" and credentials.ssl_context is not None

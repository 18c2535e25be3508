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

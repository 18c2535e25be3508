import pytest

from bridge.clusters import ClusterConfigError, load_clusters, parse_clusters


def test_two_clusters_with_options(tmp_path):
    path = tmp_path / "clusters.toml"
    path.write_text(
        """
[clusters.prod-eu]
broker = "amqp://u:p@rabbit:5672//"
queue = "q-eu"
ssl = true

[clusters.batch]
broker = "redis://redis:6379/0"
transport_options = { socket_keepalive = true }
event_exchange = "celeryev.batch"
"""
    )
    eu, batch = load_clusters(path)
    assert (eu.name, eu.broker_url, eu.queue, eu.ssl, eu.event_exchange) == ("prod-eu", "amqp://u:p@rabbit:5672//", "q-eu", True, None)
    assert (batch.name, batch.queue, batch.transport_options, batch.event_exchange) == ("batch", "", {"socket_keepalive": True}, "celeryev.batch")


@pytest.mark.parametrize(
    "text, message",
    [
        ("x = 1", "at least one [clusters.<name>]"),
        ("[clusters.a]\nqueue = 'q'", "'broker' must be a broker URL"),
        ("[clusters.a]\nbroker = 'amqp://h//'\nbrokr = 1", "unknown keys ['brokr']"),
        ('[clusters."a/b"]\nbroker = "amqp://h//"', "no '/'"),
        ("[clusters.a]\nbroker = 'amqp://h//'\nssl = 'yes'", "'ssl' is true/false"),
        ("[clusters.a]\nbroker = 'amqp://h//'\nevent_exchange = 'a b'", "'event_exchange' is the cluster's Celery event_exchange"),
        ("[clusters", "not valid TOML"),
    ],
)
def test_bad_cluster_files_say_what_to_fix(text, message):
    with pytest.raises(ClusterConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_clusters(text, "c.toml")


def test_missing_file(tmp_path):
    with pytest.raises(ClusterConfigError, match="cannot read"):
        load_clusters(tmp_path / "nope.toml")

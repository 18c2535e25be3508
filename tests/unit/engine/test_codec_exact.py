import orjson

from streams.engine.codec import dumps, exact


def test_exact_keeps_the_bytes_and_drops_orjson_growth_buffer():
    data = orjson.dumps({"event": {"type": "task-succeeded", "uuid": "u" * 36}})
    copy = exact(data)
    assert copy == data and type(copy) is bytes
    assert copy.__sizeof__() <= len(data) + 64  # orjson's own object can hold kilobytes more
    assert dumps({"b": 1, "a": {2, 1}}) == b'{"a":[1,2],"b":1}'

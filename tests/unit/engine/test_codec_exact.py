import orjson

from streams.engine.codec import dumps, exact


def test_exact_is_an_equal_separate_bytes_object():
    # The memory it saves is orjson's allocator-level growth buffer, invisible to sys.getsizeof;
    # make bench-bridge measures it (RSS 231 MB -> 72 MB). Here: same bytes, a new object.
    data = orjson.dumps({"event": {"type": "task-succeeded", "uuid": "u" * 36}})
    copy = exact(data)
    assert copy == data and type(copy) is bytes and copy is not data
    assert dumps({"b": 1, "a": {2, 1}}) == b'{"a":[1,2],"b":1}'

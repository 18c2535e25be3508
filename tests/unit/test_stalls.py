from streams.stalls import StallWatch


def test_a_hole_at_the_head_of_the_acks_is_blocked_only_when_it_stays():
    watch = StallWatch()
    assert not watch.blocked("tp", committed=100, acked=[100, 101])  # contiguous: commits move
    assert not watch.blocked("tp", committed=100, acked=[105, 106])  # first sight: may still fill
    assert watch.blocked("tp", committed=100, acked=[105, 106, 107])  # same hole next check
    assert not watch.blocked("tp", committed=100, acked=[105])  # forgotten after reporting once


def test_progress_clears_the_suspicion():
    watch = StallWatch()
    assert not watch.blocked("tp", committed=100, acked=[105])
    assert not watch.blocked("tp", committed=106, acked=[])  # the hole was filled and committed
    assert not watch.blocked("tp", committed=106, acked=[110])
    assert not watch.blocked("tp", committed=None, acked=[110])  # nothing committed yet: no opinion

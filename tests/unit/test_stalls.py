from collections import defaultdict

from streams.stalls import OffsetGaps, install_commit_floor


def test_records_in_sequence_miss_nothing():
    gaps = OffsetGaps()
    gaps.start("tp", 1, 100)
    assert [list(gaps.missing_before("tp", 1, o)) for o in (100, 101, 102)] == [[], [], []]
    assert not gaps.missing_before("tp", 1, 101)  # a redelivered older record: nothing missing
    assert not gaps.floors


def test_a_gap_names_the_missing_offsets_and_holds_commits_until_filled():
    gaps = OffsetGaps()
    gaps.start("tp", 1, 496)  # committed offset: recovery dropped 496..933
    assert gaps.missing_before("tp", 1, 934) == range(496, 934)
    assert gaps.floors == {"tp": 496}
    assert not gaps.missing_before("tp", 1, 935)  # in sequence again
    gaps.filled("tp")
    assert not gaps.floors


def test_a_new_generation_starts_over():
    gaps = OffsetGaps()
    gaps.start("tp", 1, 0)
    gaps.missing_before("tp", 1, 0)
    assert gaps.knows("tp", 1) and not gaps.knows("tp", 2)


class _FakeConsumer:
    """The three fields Faust's commit reads, and its _new_offset (simplified, with its #596 flaw)."""

    def __init__(self):
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._committed_offset = defaultdict(lambda: None)

    def _new_offset(self, tp):
        acked = sorted(self._acked[tp])
        if not acked:
            return None
        committed = self._committed_offset[tp]
        if committed and min(acked) - committed > 1:  # skipped when nothing (or 0) was committed
            return None
        run = [acked[0]]
        for o in acked[1:]:
            if o != run[-1] + 1:
                break
            run.append(o)
        return run[-1] + 1

    def ack(self, tp, *offsets):
        self._acked[tp].extend(offsets)
        self._acked_index[tp].update(offsets)


def test_the_commit_floor_holds_commits_until_the_hole_is_acked():
    consumer = _FakeConsumer()
    floors = {}
    install_commit_floor(consumer, floors)
    consumer.ack("tp", 496, 497, 498)
    assert consumer._new_offset("tp") == 499  # Faust alone: commits past the lost 0..495
    floors["tp"] = 0
    assert consumer._new_offset("tp") is None  # held
    consumer.ack("tp", *range(0, 496))
    assert consumer._new_offset("tp") == 499 and "tp" not in floors  # hole filled: released

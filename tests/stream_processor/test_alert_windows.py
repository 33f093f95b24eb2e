"""The per-flow alert window: one alert per flow per window, summaries, bounded state."""

from __future__ import annotations

from stream_processor.windows import NEW, SUMMARY, AlertWindows, Sighting


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sighting(flow: str, count: int = 1, first: int = 100, last: int = 200, score: float = 0.9):
    return Sighting(flow, 0, count, first, last, score)


class TestAlertWindows:
    def test_first_sighting_of_a_flow_raises_an_alert_at_once(self) -> None:
        """A flow seen attacking for the first time is reported immediately, with its counts."""
        windows = AlertWindows(60, 10, Clock())

        raised = windows.observe(sighting("f1", count=3, first=10, last=30), "evidence")

        assert [(NEW, "f1", 3, 10, 30, "evidence")] == [
            (r.kind, r.flow_id, r.count, r.first_ns, r.last_ns, r.evidence) for r in raised
        ]

    def test_further_sightings_within_the_window_raise_nothing(self) -> None:
        """The second and later batches of the same flow inside the window are only counted."""
        clock = Clock()
        windows = AlertWindows(60, 10, clock)
        windows.observe(sighting("f1"), "e1")
        clock.now += 30

        assert [] == windows.observe(sighting("f1", count=5), "e2")
        assert [] == windows.expire()

    def test_window_close_summarises_what_it_counted_and_reopens(self) -> None:
        """At the window's end one summary reports the suppressed records; a new window opens."""
        clock = Clock()
        windows = AlertWindows(60, 10, clock)
        windows.observe(sighting("f1", count=1, first=100, last=100), "first")
        windows.observe(sighting("f1", count=4, first=300, last=400, score=0.95), "better")
        windows.observe(sighting("f1", count=2, first=200, last=500, score=0.91), None)
        clock.now += 60

        raised = windows.expire()

        assert [(SUMMARY, 6, 200, 500, "better")] == [
            (r.kind, r.count, r.first_ns, r.last_ns, r.evidence) for r in raised
        ]
        assert 1 == len(windows)
        assert [] == windows.observe(sighting("f1"), "again")

    def test_a_window_that_counted_nothing_closes_silently(self) -> None:
        """A flow that attacked once raises one alert, and nothing when its window ends."""
        clock = Clock()
        windows = AlertWindows(60, 10, clock)
        windows.observe(sighting("f1"), "e")
        clock.now += 61

        assert [] == windows.expire()
        assert 0 == len(windows)
        assert [NEW] == [r.kind for r in windows.observe(sighting("f1"), "e")]

    def test_a_continuing_attack_raises_one_alert_per_window(self) -> None:
        """Sightings every 10 s for 3 minutes give the first alert and one summary a minute."""
        clock = Clock()
        windows = AlertWindows(60, 10, clock)
        kinds = []
        for _ in range(18):
            kinds += [r.kind for r in windows.observe(sighting("f1"), "e")]
            clock.now += 10
            kinds += [r.kind for r in windows.expire()]

        assert [NEW, SUMMARY, SUMMARY, SUMMARY] == kinds

    def test_opening_a_window_beyond_max_flows_closes_the_oldest_with_its_summary(self) -> None:
        """State stays bounded, and the evicted window's counts still reach an alert."""
        clock = Clock()
        windows = AlertWindows(60, 2, clock)
        windows.observe(sighting("old"), "e")
        windows.observe(sighting("old", count=4), "e")
        windows.observe(sighting("mid"), "e")

        raised = windows.observe(sighting("new"), "e")

        assert [(SUMMARY, "old", 4), (NEW, "new", 1)] == [
            (r.kind, r.flow_id, r.count) for r in raised
        ]
        assert 2 == len(windows)
        assert 1 == windows.evicted

    def test_draining_partitions_closes_only_their_windows(self) -> None:
        """A revoked partition's windows are summarised and dropped; others stay open."""
        windows = AlertWindows(60, 10, Clock())
        windows.observe(Sighting("a", 0, 1, 1, 1, 0.9), "e")
        windows.observe(Sighting("a", 0, 2, 2, 2, 0.9), "e")
        windows.observe(Sighting("b", 1, 1, 1, 1, 0.9), "e")

        raised = windows.drain([0])

        assert [("a", 2)] == [(r.flow_id, r.count) for r in raised]
        assert 1 == len(windows)

    def test_evidence_is_wanted_for_new_flows_and_clearly_better_scores(self) -> None:
        """Building evidence is skipped for open windows unless the score rises noticeably."""
        windows = AlertWindows(60, 10, Clock())
        windows.observe(sighting("f1"), "e")
        windows.observe(sighting("f1", score=0.9), "e")

        assert windows.wants_evidence("f2", 0.6)
        assert not windows.wants_evidence("f1", 0.9001)
        assert windows.wants_evidence("f1", 0.95)

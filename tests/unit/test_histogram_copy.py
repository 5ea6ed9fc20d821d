"""A histogram's copy (taken under the pipeline lock per scrape) is equal and independent."""

from __future__ import annotations

from monitor.stats import LATENCY_BUCKETS, Histogram


def test_a_copy_is_equal_and_later_observations_do_not_reach_it() -> None:
    h = Histogram.with_edge(LATENCY_BUCKETS, 42.0)
    for v in (0.01, 3.0, 41.0, 1e9):
        h.observe(v)
    c = h.copy()
    assert c == h and c.cumulative() == h.cumulative()
    h.observe(5.0)
    assert c.count == 4 and h.count == 5
    c.observe(0.5)
    assert h.counts != c.counts and c.total != h.total

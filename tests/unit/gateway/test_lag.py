"""The sampled publish-to-send lag: which messages are stamped, and the bucket counts."""

from __future__ import annotations

import time

from praxiom_progress.gateway.lag import LagHistogram, LagSampler


def test_the_sampler_stamps_at_most_one_message_per_interval() -> None:
    now = [100.0]
    sampler = LagSampler(interval_s=0.05, clock=lambda: now[0])
    stamps = []
    for step in (0.0, 0.01, 0.02, 0.06, 0.07, 0.2):
        now[0] = 100.0 + step
        stamps.append(sampler.stamp())
    assert stamps == [100.0, 0.0, 0.0, 100.06, 0.0, 100.2]


def test_the_histogram_counts_each_lag_in_its_bucket_cumulatively() -> None:
    histogram = LagHistogram(bounds=(0.01, 0.1))
    now = time.monotonic()
    for lag in (0.0, 0.05, 5.0):
        histogram.record_since(now - lag)
    assert histogram.count == 3
    assert [count for _, count in histogram.cumulative()] == [1, 2, 3]
    assert [le for le, _ in histogram.cumulative()] == ["0.01", "0.1", "+Inf"]
    assert 5.05 <= histogram.sum_s < 5.2

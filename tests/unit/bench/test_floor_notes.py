"""`bench.floor_notes`: BENCHMARKS.md explains a target read against the floor only when the
run missed it, and says whether the floor itself missed it too."""

from __future__ import annotations

from dataclasses import replace

from bench.floor_notes import render
from bench.results import GatewayResults
from bench.scenarios import Delivery, Idle, IdleLevel, Storm


def delivery(*, tasks: int, p99_ms: float, cpu_s: float) -> Delivery:
    return Delivery(
        streams=tasks, tasks=tasks, published=1000, expected=1000, received=1000, p50_ms=1.0,
        p99_ms=p99_ms, max_ms=p99_ms, server_cpu_pct=10.0, loadgen_cpu_pct=10.0,
        publisher_cpu_pct=1.0, server_cpu_s=cpu_s,
    )  # fmt: skip


def gateway(*, open_s: float, cpu_s: float, hot_p99_ms: float, storm_s: float) -> GatewayResults:
    levels = [IdleLevel(5000, 14.0, open_s=open_s, open_cpu_s=open_s),
              IdleLevel(10000, 14.0, open_s=open_s, open_cpu_s=open_s)]  # fmt: skip
    return GatewayResults(
        idle=Idle(60.0, levels),
        fan_out=delivery(tasks=1, p99_ms=10.0, cpu_s=0.01),
        many=delivery(tasks=2000, p99_ms=2.0, cpu_s=cpu_s),
        storm=Storm(2000, 2000, storm_s, 1.0, 1.0, 50.0, 50.0),
        hot=delivery(tasks=1, p99_ms=hot_p99_ms, cpu_s=0.01),
    )


FLOOR = gateway(open_s=1.0, cpu_s=0.1, hot_p99_ms=50.0, storm_s=1.0)


def test_no_note_when_every_target_is_met() -> None:
    ours = gateway(open_s=1.1, cpu_s=0.105, hot_p99_ms=70.0, storm_s=1.1)
    assert render(ours, FLOOR) == []


def test_each_missed_target_gets_its_note() -> None:
    ours = gateway(open_s=1.5, cpu_s=0.15, hot_p99_ms=90.0, storm_s=1.9)
    text = "\n".join(render(ours, FLOOR))
    assert "**Opening idle streams** (1.50x the floor's time" in text
    assert "**CPU per delivered event, 2,000 tasks x 1** (150.0 µs, 1.50x" in text
    assert "**1 task x 1: p99** (90.0 ms, target 75): the floor meets it (50.0 ms)" in text
    assert "**Storm, all first events** (1.9 s, target 1.2): the floor meets it" in text


def test_a_target_the_floor_misses_too_is_said_to_be_beyond_the_stack() -> None:
    slow_floor = replace(FLOOR, storm=replace(FLOOR.storm, all_ready_s=2.2))
    ours = gateway(open_s=1.0, cpu_s=0.1, hot_p99_ms=50.0, storm_s=2.1)
    (note,) = [line for line in render(ours, slow_floor) if line.startswith("- ")]
    assert note.startswith("- **Storm, all first events** (2.1 s, target 1.2): the floor "
                           "misses it too (2.2 s)")  # fmt: skip

"""`runner.slots.free_slots`: a slot is a handler running; ends being written hold none, within
a bound of RUNNER_CONCURRENCY of them."""

from __future__ import annotations

from dataclasses import dataclass

from praxiom_progress.runner.slots import free_slots


@dataclass
class Held:
    finishing: bool = False


def held(running: int, ending: int) -> list[Held]:
    return [Held() for _ in range(running)] + [Held(finishing=True) for _ in range(ending)]


def test_every_slot_is_free_with_nothing_held() -> None:
    assert free_slots([], 10) == 10


def test_running_handlers_take_slots() -> None:
    assert free_slots(held(3, 0), 10) == 7
    assert free_slots(held(10, 0), 10) == 0


def test_ends_being_written_take_no_slot() -> None:
    assert free_slots(held(4, 3), 10) == 6
    assert free_slots(held(0, 10), 10) == 10


def test_no_more_ends_than_the_concurrency_are_waited_on_besides() -> None:
    assert free_slots(held(4, 12), 10) == 4
    assert free_slots(held(5, 15), 10) == 0
    assert free_slots(held(0, 25), 10) == 0  # never negative

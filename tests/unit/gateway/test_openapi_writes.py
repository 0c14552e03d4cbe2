"""A gateway run with GATEWAY_WRITES=0 documents no spawn and no cancel (both answer 404)."""

from __future__ import annotations

from praxiom_progress.gateway.openapi import build
from praxiom_progress.taskstate.settings import Settings

WRITES = {"/api/tasks/spawn", "/api/tasks/{task_id}/cancel"}


def test_spawn_and_cancel_are_documented_only_where_they_are_served() -> None:
    assert WRITES <= set(build(Settings())["paths"])
    read_only = set(build(Settings(gateway_writes=False))["paths"])
    assert not WRITES & read_only
    assert "/api/tasks/{task_id}/progress" in read_only and "/api/tasks/{task_id}" in read_only

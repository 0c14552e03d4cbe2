"""The runner's unit tests: its store and its publisher in memory, so a whole runner starts,
runs tasks and stops in milliseconds, with no PostgreSQL and no Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.runner.fake_store import FakeRunnerStore, RecordingPublisher
from tests.unit.runner.runner_kit import RunnerKit


@pytest.fixture
def store() -> FakeRunnerStore:
    return FakeRunnerStore()


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def runners(
    store: FakeRunnerStore, publisher: RecordingPublisher
) -> AsyncIterator[RunnerKit]:
    kit = RunnerKit(store, publisher)
    yield kit
    await kit.stop_all()

"""`praxiom_progress` is the public API: every name it lists is there, the very object its
home module defines, loaded when first used so that importing the package stays cheap."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import praxiom_progress

HOMES = {
    "spawn": "praxiom_progress.producer",
    "spawn_sync": "praxiom_progress.producer",
    "cancel": "praxiom_progress.producer",
    "cancel_sync": "praxiom_progress.producer",
    "HandlerRegistry": "praxiom_progress.runner.handlers",
    "TaskContext": "praxiom_progress.runner.handlers",
    "SyncTaskContext": "praxiom_progress.runner.handlers",
    "TaskResult": "praxiom_progress.runner.handlers",
    "TaskFailed": "praxiom_progress.runner.handlers",
    "TaskLost": "praxiom_progress.runner.handlers",
    "NotFound": "praxiom_progress.taskstate.errors",
    "SpawnRejected": "praxiom_progress.taskstate.spawning",
    "TaskAlreadyFinished": "praxiom_progress.taskstate.store",
}


def test_the_public_names_are_the_listed_ones() -> None:
    assert sorted(praxiom_progress.__all__) == sorted([*HOMES, "__version__"])


@pytest.mark.parametrize(("name", "home"), sorted(HOMES.items()))
def test_each_name_is_its_home_modules_object(name: str, home: str) -> None:
    assert getattr(praxiom_progress, name) is getattr(importlib.import_module(home), name)
    assert name in dir(praxiom_progress)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'spawn_later'"):
        praxiom_progress.spawn_later  # type: ignore[attr-defined]  # noqa: B018


def test_importing_the_package_loads_no_driver_and_no_handler_api() -> None:
    probe = (
        "import sys, praxiom_progress, praxiom_progress.taskstate.settings; "
        "print(sorted(m for m in ('aiopg', 'psycopg2', 'aiohttp', 'marshmallow', "
        "'praxiom_progress.runner.handlers', 'praxiom_progress.producer') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

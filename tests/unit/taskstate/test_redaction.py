"""hide_password: no password in anything shown, however the URL is written (and a wrong
setting's error names the value without it)."""

from __future__ import annotations

import pytest

from praxiom_progress.taskstate.redaction import hide_password
from praxiom_progress.taskstate.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://praxiom-runner:pw1@cache:6379/0", "redis://praxiom-runner:***@cache:6379/0"),
        ("redis://:pw1@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:p@ss@cache", "redis://user:***@cache"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("redis://praxiom-runner@cache", "redis://praxiom-runner@cache"),
        ("redis//praxiom-runner:pw1@cache:6379", "***@cache:6379"),  # a typo'd scheme
        ("http://user:pw1@cache", "http://user:***@cache"),
        ("user:pw1@cache", "***@cache"),
        ("host=db password=pw1 user=app", "host=db password=*** user=app"),
        ("host=db password='p w1' user=app", "host=db password=*** user=app"),
        ("redis://cache/0?password=pw1", "redis://cache/0?password=***"),
    ],
)
def test_no_password_is_shown(url: str, shown: str) -> None:
    assert hide_password(url) == shown


@pytest.mark.parametrize(
    "environ",
    [
        {"REDIS_URL": "redis//praxiom-runner:s3cret@cache:6379/0"},
        {"REDIS_URL": "http://praxiom-runner:s3cret@cache:6379/0"},
        {"REDIS_URL": "redis://praxiom-runner:s3cret@cache:port/0"},
        {"DATABASE_URL": "postgresq://app:s3cret@db/praxiom"},
    ],
)
def test_a_wrong_url_is_named_without_its_password(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(environ)
    assert "s3cret" not in str(refused.value)
    assert "***" in str(refused.value)

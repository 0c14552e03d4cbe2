"""The settings of PostgreSQL beyond one server: DATABASE_READ_URL and its lag, GATEWAY_WRITES,
DATABASE_LISTEN_URL and its probe."""

from __future__ import annotations

import pytest

from praxiom_progress.taskstate.settings import Settings, SettingsError

STANDBY = "postgresql://reader:s3cret-ro@standby.internal:5432/praxiom"


def test_defaults_read_and_write_on_database_url() -> None:
    settings = Settings.from_env({})
    assert settings.database_read_url is None
    assert settings.gateway_writes is True
    assert settings.database_read_max_lag_s == 2.0
    assert settings.database_read_check_interval_s == 0.5
    assert settings.database_listen_url is None
    assert settings.database_listen_probe_timeout_s == 5.0
    assert settings.database_listen_retry_s == 60.0


@pytest.mark.parametrize(
    ("variable", "raw", "attr", "expected"),
    [
        ("DATABASE_READ_URL", STANDBY, "database_read_url", STANDBY),
        ("DATABASE_READ_MAX_LAG", "0", "database_read_max_lag_s", 0.0),
        ("DATABASE_READ_MAX_LAG", "5", "database_read_max_lag_s", 5.0),
        ("DATABASE_READ_CHECK_INTERVAL", "0.1", "database_read_check_interval_s", 0.1),
        ("GATEWAY_WRITES", "0", "gateway_writes", False),
        ("GATEWAY_WRITES", "1", "gateway_writes", True),
        ("DATABASE_LISTEN_URL", STANDBY, "database_listen_url", STANDBY),
        ("DATABASE_LISTEN_PROBE_TIMEOUT", "0.5", "database_listen_probe_timeout_s", 0.5),
        ("DATABASE_LISTEN_RETRY", "30", "database_listen_retry_s", 30.0),
    ],
)
def test_each_variable_sets_its_field(variable: str, raw: str, attr: str, expected: object) -> None:
    assert getattr(Settings.from_env({variable: raw}), attr) == expected


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("DATABASE_READ_URL", "standby:5432"),
        ("DATABASE_READ_MAX_LAG", "-1"),
        ("DATABASE_READ_CHECK_INTERVAL", "0"),
        ("GATEWAY_WRITES", "maybe"),
        ("DATABASE_LISTEN_URL", "db:5432"),
        ("DATABASE_LISTEN_PROBE_TIMEOUT", "0"),
        ("DATABASE_LISTEN_RETRY", "-5"),
    ],
)
def test_bad_values_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


def test_a_standby_may_lag_no_more_than_the_idle_re_read_interval() -> None:
    """Past SSE_IDLE_TIMEOUT a stream's first re-read could still come from a standby that had
    not replayed a state the stream missed: refused, naming both settings."""
    with pytest.raises(SettingsError, match=r"DATABASE_READ_MAX_LAG.*SSE_IDLE_TIMEOUT"):
        Settings.from_env(
            {"DATABASE_READ_URL": STANDBY, "DATABASE_READ_MAX_LAG": "11", "SSE_IDLE_TIMEOUT": "10"}
        )
    Settings.from_env({"DATABASE_READ_URL": STANDBY, "DATABASE_READ_MAX_LAG": "10"})
    # Without a standby the lag is not used, and a short idle timeout stays valid.
    Settings.from_env({"SSE_IDLE_TIMEOUT": "0.5"})


def test_repr_hides_the_standby_and_listen_passwords() -> None:
    direct = "postgresql://app:s3cret-direct@db.internal:5432/praxiom"
    text = repr(Settings.from_env({"DATABASE_READ_URL": STANDBY, "DATABASE_LISTEN_URL": direct}))
    assert "s3cret-ro" not in text and "s3cret-direct" not in text
    assert "postgresql://reader:***@standby.internal:5432/praxiom" in text
    assert "postgresql://app:***@db.internal:5432/praxiom" in text

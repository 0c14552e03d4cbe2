"""Settings.from_env: the spec's defaults, overrides, and one clear error per bad value."""

from __future__ import annotations

import os

import pytest

from praxiom_progress.taskstate.parsing import MAX_GATEWAY_PROCESSES, cores
from praxiom_progress.taskstate.settings import DEFAULT_TASK_TIMEOUTS, Settings, SettingsError


def test_defaults_match_the_spec() -> None:
    settings = Settings.from_env({})
    assert settings.sse_poll_interval_s == 3
    assert settings.sse_idle_timeout_s == 10
    assert settings.sse_poll_limit == 200
    assert settings.sse_direct_write is True
    assert settings.sse_workspace_recent_s == 60  # the workspace stream's snapshot
    assert settings.sse_workspace_max_tasks == 500
    assert settings.workspace_max_running == 0  # no cap
    assert dict(settings.task_timeouts) == {
        "validation_kit": 240,
        "fs_research": 600,
        "default": 300,
    }
    assert settings.runner_heartbeat_interval_s == 5
    assert settings.runner_stale_after_s == 30
    assert settings.runner_reaper_interval_s == 5
    assert settings.runner_shutdown_grace_s == 30
    assert settings.runner_metrics_port == 9108
    assert settings.gateway_port == 8080
    assert settings.session_cookie_name == "praxiom_session"
    assert settings.runner_task_modules == ("praxiom_progress.runner.builtin",)
    assert settings.runner_loop_stall_s == 0.1
    assert settings.runner_kill_grace_s == 2
    assert settings.log_level == "INFO"
    assert settings.gateway_loop_stall_tick_s == 0.005
    assert settings.gateway_gc_thresholds == (700, 10, 10)  # Python's own
    assert settings.gateway_gc_freeze_after == 200


def test_from_env_ignores_unrelated_variables() -> None:
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root"}) == Settings()


def test_blank_values_keep_the_default() -> None:
    settings = Settings.from_env({"SSE_POLL_INTERVAL": "", "GATEWAY_PORT": "   "})
    assert settings.sse_poll_interval_s == 3
    assert settings.gateway_port == 8080


@pytest.mark.parametrize(
    ("variable", "raw", "attr", "expected"),
    [
        ("DATABASE_URL", "postgresql://u@db:5433/x", "database_url", "postgresql://u@db:5433/x"),
        ("REDIS_URL", "redis://cache:6380/2", "redis_url", "redis://cache:6380/2"),
        ("GATEWAY_HOST", " 0.0.0.0 ", "gateway_host", "0.0.0.0"),
        ("GATEWAY_PORT", "9000", "gateway_port", 9000),
        ("SSE_POLL_INTERVAL", "0.25", "sse_poll_interval_s", 0.25),
        ("SSE_IDLE_TIMEOUT", "1.5", "sse_idle_timeout_s", 1.5),
        ("SSE_POLL_LIMIT", "7", "sse_poll_limit", 7),
        ("SSE_DIRECT_WRITE", "0", "sse_direct_write", False),
        ("SSE_MAX_VERSION_JUMP", "50", "sse_max_version_jump", 50),
        ("SSE_DELIVER_CHUNK", "40", "sse_deliver_chunk", 40),
        ("SSE_WORKSPACE_RECENT", "0", "sse_workspace_recent_s", 0.0),
        ("SSE_WORKSPACE_MAX_TASKS", "20", "sse_workspace_max_tasks", 20),
        ("SSE_DIRECT_WRITE", "off", "sse_direct_write", False),
        ("RUNNER_CONCURRENCY", "3", "runner_concurrency", 3),
        ("WORKSPACE_MAX_RUNNING", "4", "workspace_max_running", 4),
        ("WORKSPACE_MAX_RUNNING", "0", "workspace_max_running", 0),
        ("RUNNER_HEARTBEAT_INTERVAL", "0.5", "runner_heartbeat_interval_s", 0.5),
        ("RUNNER_STALE_AFTER", "4", "runner_stale_after_s", 4.0),
        ("RUNNER_REAPER_INTERVAL", "0.2", "runner_reaper_interval_s", 0.2),
        ("RUNNER_POLL_INTERVAL", "1", "runner_poll_interval_s", 1.0),
        ("RUNNER_SHUTDOWN_GRACE", "2", "runner_shutdown_grace_s", 2.0),
        ("RUNNER_METRICS_PORT", "0", "runner_metrics_port", 0),
        ("RUNNER_METRICS_PORT", "65535", "runner_metrics_port", 65535),
        ("RUNNER_TASK_MODULES", "a.b, c ,", "runner_task_modules", ("a.b", "c")),
        ("RUNNER_LOOP_STALL", "0.25", "runner_loop_stall_s", 0.25),
        ("RUNNER_KILL_GRACE", "5", "runner_kill_grace_s", 5.0),
        ("DATABASE_TIMEOUT", "5", "database_timeout_s", 5.0),
        ("SESSION_COOKIE_NAME", "sid", "session_cookie_name", "sid"),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("GATEWAY_LOOP_STALL_TICK", "0.01", "gateway_loop_stall_tick_s", 0.01),
        ("GATEWAY_GC_THRESHOLDS", "10000, 20,0", "gateway_gc_thresholds", (10000, 20, 0)),
        ("GATEWAY_GC_FREEZE_AFTER", "0", "gateway_gc_freeze_after", 0),
        ("GATEWAY_GC_FREEZE_CHECK", "0.5", "gateway_gc_freeze_check_s", 0.5),
    ],
)
def test_each_variable_overrides_its_field(
    variable: str, raw: str, attr: str, expected: object
) -> None:
    settings = Settings.from_env({variable: raw})
    assert getattr(settings, attr) == expected
    # Nothing else moved.
    others = {name: value for name, value in vars(settings).items() if name != attr}
    defaults = {name: value for name, value in vars(Settings()).items() if name != attr}
    assert others == defaults


def test_task_timeouts_override_all() -> None:
    settings = Settings.from_env(
        {"TASK_TIMEOUTS": "validation_kit=1, fs_research=2.5,default=3,deep_dive=4"}
    )
    assert dict(settings.task_timeouts) == {
        "validation_kit": 1.0,
        "fs_research": 2.5,
        "default": 3.0,
        "deep_dive": 4.0,
    }


def test_task_timeouts_partial_override_keeps_other_defaults() -> None:
    settings = Settings.from_env({"TASK_TIMEOUTS": "validation_kit=12"})
    assert dict(settings.task_timeouts) == {
        "validation_kit": 12.0,
        "fs_research": 600.0,
        "default": 300.0,
    }
    # The module-level defaults are not mutated by a parse.
    assert DEFAULT_TASK_TIMEOUTS["validation_kit"] == 240.0


def test_task_timeouts_are_read_only() -> None:
    settings = Settings.from_env({"TASK_TIMEOUTS": "validation_kit=12"})
    with pytest.raises(TypeError):
        settings.task_timeouts["validation_kit"] = 1  # type: ignore[index]


def test_timeout_for_named_types_and_fallback() -> None:
    settings = Settings.from_env({})
    assert settings.timeout_for("validation_kit") == 240
    assert settings.timeout_for("fs_research") == 600
    assert settings.timeout_for("synthesis") == 300
    overridden = Settings.from_env({"TASK_TIMEOUTS": "default=42"})
    assert overridden.timeout_for("synthesis") == 42
    assert overridden.timeout_for("validation_kit") == 240


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("SSE_POLL_INTERVAL", "abc"),
        ("WORKSPACE_MAX_RUNNING", "-1"),
        ("WORKSPACE_MAX_RUNNING", "two"),
        ("SSE_POLL_INTERVAL", "0"),
        ("SSE_POLL_INTERVAL", "-1"),
        ("SSE_POLL_INTERVAL", "nan"),
        ("SSE_POLL_INTERVAL", "inf"),
        ("SSE_IDLE_TIMEOUT", "ten"),
        ("SSE_IDLE_TIMEOUT", "-0.5"),
        ("SSE_POLL_LIMIT", "0"),
        ("SSE_POLL_LIMIT", "-3"),
        ("SSE_POLL_LIMIT", "2.5"),
        ("SSE_POLL_LIMIT", "many"),
        ("SSE_DIRECT_WRITE", "maybe"),
        ("SSE_MAX_VERSION_JUMP", "0"),
        ("SSE_DELIVER_CHUNK", "0"),
        ("SSE_WORKSPACE_RECENT", "-1"),
        ("SSE_WORKSPACE_MAX_TASKS", "0"),
        ("RUNNER_CONCURRENCY", "0"),
        ("RUNNER_HEARTBEAT_INTERVAL", "0"),
        ("RUNNER_STALE_AFTER", "-30"),
        ("RUNNER_REAPER_INTERVAL", "x"),
        ("RUNNER_POLL_INTERVAL", "0"),
        ("RUNNER_SHUTDOWN_GRACE", "-1"),
        ("RUNNER_LOOP_STALL", "0"),
        ("RUNNER_KILL_GRACE", "soon"),
        ("DATABASE_TIMEOUT", "0"),
        ("GATEWAY_PORT", "65536"),
        ("GATEWAY_PORT", "-1"),
        ("GATEWAY_PORT", "http"),
        ("RUNNER_METRICS_PORT", "70000"),
        ("LOG_LEVEL", "VERBOSE"),
        ("LOG_LEVEL", "warn"),
        ("RUNNER_TASK_MODULES", ","),
        ("RUNNER_TASK_MODULES", " , , "),
        ("GATEWAY_LOOP_STALL_TICK", "0"),
        ("GATEWAY_GC_THRESHOLDS", "700,10"),
        ("GATEWAY_GC_THRESHOLDS", "0,10,10"),
        ("GATEWAY_GC_THRESHOLDS", "700,-1,10"),
        ("GATEWAY_GC_THRESHOLDS", "a,b,c"),
        ("GATEWAY_GC_FREEZE_AFTER", "-1"),
        ("GATEWAY_GC_FREEZE_CHECK", "0"),
    ],
)
def test_bad_values_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: raw})
    assert variable in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "raw",
    [
        "validation_kit",  # no '='
        "validation_kit=",  # no seconds
        "=240",  # no type
        "validation_kit=abc",
        "validation_kit=0",
        "validation_kit=-5",
        "default=nan",
        "Validation_Kit=240",  # not a task type name
        "bad-type=10",
        "validation_kit=240;fs_research=600",
        "validation_kit=240,validation_kit=10",  # the same type twice
    ],
)
def test_bad_task_timeouts_entries(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"TASK_TIMEOUTS": raw})
    assert "TASK_TIMEOUTS" in str(caught.value)


def test_task_timeouts_entry_error_names_the_entry() -> None:
    with pytest.raises(SettingsError, match="'fs_research'"):
        Settings.from_env({"TASK_TIMEOUTS": "validation_kit=10,fs_research=-1"})


def test_repr_hides_passwords() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://app:s3cret-db@db.internal:5432/praxiom",
            "REDIS_URL": "redis://:r3dis-pw@cache:6379/0",
        }
    )
    text = repr(settings)
    assert "s3cret-db" not in text
    assert "r3dis-pw" not in text
    assert "postgresql://app:***@db.internal:5432/praxiom" in text
    assert "redis://:***@cache:6379/0" in text
    # The real values are still there for the code that connects.
    assert settings.database_url == "postgresql://app:s3cret-db@db.internal:5432/praxiom"
    assert settings.redis_url == "redis://:r3dis-pw@cache:6379/0"


def test_repr_without_password_shows_url_unchanged() -> None:
    text = repr(Settings())
    assert "postgresql://postgres@127.0.0.1:5432/praxiom" in text
    assert "redis://127.0.0.1:6379/0" in text
    assert text.startswith("Settings(")
    assert "'validation_kit': 240.0" in text


def test_replace_returns_a_new_settings() -> None:
    base = Settings()
    changed = base.replace(sse_poll_interval_s=0.1)
    assert changed.sse_poll_interval_s == 0.1
    assert base.sse_poll_interval_s == 3


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "mysql://x/y"),
        ("REDIS_URL", "127.0.0.1:6379"),
    ],
)
def test_malformed_server_urls_are_refused_naming_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


def test_keyword_value_database_dsn_is_accepted() -> None:
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname=praxiom"
    assert Settings.from_env({"DATABASE_URL": dsn}).database_url == dsn


def test_cors_allowed_origins_are_a_list_of_origins() -> None:
    assert Settings.from_env({}).cors_allowed_origins == ()
    settings = Settings.from_env(
        {"CORS_ALLOWED_ORIGINS": " https://App.Example.com , http://127.0.0.1:8081,"}
    )
    assert settings.cors_allowed_origins == ("https://app.example.com", "http://127.0.0.1:8081")


@pytest.mark.parametrize(
    "raw", ["*", "https://app.example.com/", "app.example.com", "ftp://x", "http://x:port"]
)
def test_cors_allowed_origins_refuses_what_is_not_an_origin(raw: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS"):
        Settings.from_env({"CORS_ALLOWED_ORIGINS": raw})


def test_redis_url_names_several_seed_nodes_in_cluster_mode() -> None:
    """Issue 19: one dead seed must not stop a process; any node named that answers will do."""
    settings = Settings.from_env(
        {
            "REDIS_CLUSTER": "1",
            "REDIS_URL": "redis://:pw@10.0.0.1:7000, redis://:pw@10.0.0.2:7000,10.0.0.3:7001",
        }
    )
    assert settings.redis_seed_urls == (
        "redis://:pw@10.0.0.1:7000",
        "redis://:pw@10.0.0.2:7000",
        "redis://:pw@10.0.0.3:7001",  # a bare host:port takes the first URL's credentials
    )
    assert "pw" not in repr(settings)
    assert "redis://:***@10.0.0.3:7001" in repr(settings)
    assert Settings.from_env({"REDIS_URL": "rediss://cache:6380/0"}).redis_seed_urls == (
        "rediss://cache:6380/0",
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REDIS_URL": "redis://a:7000,redis://b:7000"}, "REDIS_CLUSTER"),
        ({"REDIS_URL": "redis://a:7000,redis://b:x", "REDIS_CLUSTER": "1"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://a:7000,http://b:7000", "REDIS_CLUSTER": "1"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://a:7000,unix:///r.sock", "REDIS_CLUSTER": "1"}, "REDIS_CLUSTER"),
    ],
)
def test_a_list_of_redis_nodes_is_for_a_cluster_of_tcp_nodes(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_gateway_processes_default_to_one_supervised_by_nobody() -> None:
    settings = Settings.from_env({})
    assert settings.gateway_processes == 1
    assert settings.gateway_restart_delay_s == 1.0
    assert settings.gateway_restart_max_delay_s == 30.0
    assert settings.gateway_stop_grace_s == 30.0


@pytest.mark.parametrize("raw", ["auto", " AUTO ", "Auto"])
def test_gateway_processes_auto_is_one_per_core_this_process_may_use(raw: str) -> None:
    assert cores() == len(os.sched_getaffinity(0))
    assert Settings.from_env({"GATEWAY_PROCESSES": raw}).gateway_processes == cores()


@pytest.mark.parametrize(
    ("variable", "raw", "attr", "expected"),
    [
        ("GATEWAY_PROCESSES", "2", "gateway_processes", 2),
        ("GATEWAY_PROCESSES", str(MAX_GATEWAY_PROCESSES), "gateway_processes", 256),
        ("GATEWAY_RESTART_DELAY", "0.2", "gateway_restart_delay_s", 0.2),
        ("GATEWAY_RESTART_MAX_DELAY", "5", "gateway_restart_max_delay_s", 5.0),
        ("GATEWAY_STOP_GRACE", "3", "gateway_stop_grace_s", 3.0),
    ],
)
def test_gateway_process_settings_override_their_fields(
    variable: str, raw: str, attr: str, expected: object
) -> None:
    assert getattr(Settings.from_env({variable: raw}), attr) == expected


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5", "257", "autos", "max"])
def test_bad_gateway_processes_say_what_is_allowed(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"GATEWAY_PROCESSES": raw})
    assert str(caught.value) == (
        f"GATEWAY_PROCESSES must be auto (one per core) or a whole number from 1 to 256, "
        f"got {raw!r}"
    )


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("GATEWAY_RESTART_DELAY", "0"),
        ("GATEWAY_RESTART_MAX_DELAY", "-1"),
        ("GATEWAY_STOP_GRACE", "soon"),
    ],
)
def test_bad_gateway_process_timings_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})


def test_a_progress_publish_may_go_out_until_its_task_could_have_been_reaped() -> None:
    assert Settings().runner_progress_publish_within_s == 30.0 - 5.0
    fast = Settings(runner_stale_after_s=3.0, runner_heartbeat_interval_s=0.5)
    assert fast.runner_progress_publish_within_s == 2.5
    # A stale window shorter than a heartbeat interval (a misconfiguration) still leaves one.
    odd = Settings(runner_stale_after_s=1.0, runner_heartbeat_interval_s=2.0)
    assert odd.runner_progress_publish_within_s == 2.0

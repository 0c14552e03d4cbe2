"""Behind a trusted proxy the logs and limits see the client the proxy names; anyone else's
X-Forwarded-For is ignored. Too many 401s from one address: 429 before any lookup."""

from __future__ import annotations

from typing import Any

import pytest

from praxiom_progress.gateway.app import create_app
from praxiom_progress.gateway.keys import GATEWAY_STORE, LIMIT_STATS
from praxiom_progress.taskstate.settings import Settings, SettingsError
from tests.conftest import bearer
from tests.log_capture import captured_logs

UNKNOWN = "pxp_" + "0" * 40
PATH = "/api/tasks/00000000-0000-0000-0000-000000000000/status"


async def _remote_logged(api: Any, **headers: str) -> str:
    with captured_logs() as logs:
        await api.get("/healthz", headers=headers)
    (line,) = logs.access()
    return str(line["remote"])


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(
    aiohttp_client: Any, settings: Settings
) -> None:
    trusting = await aiohttp_client(
        create_app(settings.replace(gateway_trusted_proxies=("127.0.0.0/8", "10.0.0.0/8")))
    )
    forwarded = {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}  # client, then an inner proxy
    assert await _remote_logged(trusting, **forwarded) == "203.0.113.7"
    assert await _remote_logged(trusting, **{"X-Forwarded-For": "junk, 10.1.2.3"}) == "10.1.2.3"
    assert await _remote_logged(trusting) == "127.0.0.1"

    untrusting = await aiohttp_client(create_app(settings))  # no proxy trusted: ignored
    assert await _remote_logged(untrusting, **forwarded) == "127.0.0.1"


@pytest.mark.parametrize(
    "path", [PATH, PATH.replace("/status", "/progress")], ids=["status", "stream"]
)
async def test_an_address_with_too_many_401s_gets_429_before_any_lookup(
    aiohttp_client: Any, settings: Settings, path: str
) -> None:
    """The stream takes its own front-door visit (gateway.front): the same count, the same
    429 before any lookup."""
    app = create_app(
        settings.replace(auth_failures_per_minute=3, gateway_trusted_proxies=("127.0.0.1",))
    )
    api = await aiohttp_client(app)
    attacker = {**bearer(UNKNOWN), "X-Forwarded-For": "198.51.100.9"}
    for _ in range(3):
        assert (await api.get(path, headers=attacker)).status == 401
    store = app[GATEWAY_STORE]
    looked_up = []
    for name in ("authorize_task", "authorize_stream"):
        lookup = getattr(store, name)

        async def counting(*args: Any, lookup: Any = lookup, **kwargs: Any) -> Any:
            looked_up.append(args)
            return await lookup(*args, **kwargs)

        setattr(store, name, counting)
    refused = await api.get(path, headers=attacker)
    assert refused.status == 429 and int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error"]["code"] == "RATE_LIMITED"
    assert looked_up == [], "a refused address still cost a database lookup"
    assert app[LIMIT_STATS].auth_failures_limited == 1
    # Another client behind the same proxy is not punished for it.
    other = {**bearer(UNKNOWN), "X-Forwarded-For": "198.51.100.10"}
    assert (await api.get(path, headers=other)).status == 401


def test_a_bad_trusted_proxy_setting_stops_the_start() -> None:
    with pytest.raises(SettingsError, match="GATEWAY_TRUSTED_PROXIES"):
        Settings.from_env({"GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,not-an-address"})

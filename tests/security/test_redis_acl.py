"""Redis is least-privilege: a real redis-server runs `config/redis-acl.conf` as shipped (its
password placeholders replaced), the gateway and a runner process each connect as their own
user through `REDIS_URL`, a task runs end to end, and each user is refused everything else.

The gateway's user may only subscribe to `praxiom:*`: it may not publish (its spawn and cancel
writes reach streams through PostgreSQL's NOTIFY instead; README, "Security model"), read or
write a key, or administer the server. The runner's user may publish and may not subscribe.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from praxiom_progress.cli.embedded import redis_server_binary
from praxiom_progress.gateway.keys import DISPATCHER, TASK_WRITES
from praxiom_progress.taskstate.accounts import IssuedToken
from praxiom_progress.taskstate.publisher import connect_redis
from praxiom_progress.taskstate.settings import Settings
from tests.conftest import (
    REPO,
    LiveGateway,
    ThrowawayRedis,
    bearer,
    free_port,
    wait_for,
)
from tests.log_capture import captured_logs
from tests.redis_cluster import LocalRedisCluster
from tests.sse_client import events, stream_timeout

ACL_FILE = REPO / "config" / "redis-acl.conf"
RUNNER, GATEWAY = "praxiom-runner", "praxiom-gateway"
PLACEHOLDERS = {RUNNER: "CHANGE-ME-runner-password", GATEWAY: "CHANGE-ME-gateway-password"}
CHANNEL = "praxiom:task_progress:00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class AclRedis:
    server: ThrowawayRedis
    passwords: dict[str, str]

    def url(self, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"redis://{user}:{secret}@127.0.0.1:{self.server.port}/0"

    @property
    def anonymous_url(self) -> str:
        return self.server.url


def acl_text(passwords: dict[str, str]) -> str:
    """The shipped ACL file with each user's placeholder swapped for its password's rule."""
    text = ACL_FILE.read_text()
    for user, placeholder in PLACEHOLDERS.items():
        assert text.count(placeholder) == 1, f"{placeholder} is {user}'s one placeholder"
        text = text.replace(placeholder, f">{passwords[user]}")
    return text


def new_passwords() -> dict[str, str]:
    return {user: secrets.token_hex(16) for user in PLACEHOLDERS}


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[AclRedis]:
    """A redis-server loading the shipped ACL file (`aclfile`), with passwords of its own."""
    passwords = new_passwords()
    aclfile = tmp_path / "redis-acl.conf"
    aclfile.write_text(acl_text(passwords))
    server = ThrowawayRedis(tmp_path, aclfile=aclfile)
    server.start()
    yield AclRedis(server, passwords)
    server.stop()


async def _refused(call: Awaitable[Any]) -> None:
    """`call` must be refused with NOPERM."""
    with pytest.raises(NoPermissionError):
        await call


async def _subscribe_refused(client: aioredis.Redis, command: str, channel: str) -> None:
    """A subscribe refused by the ACL: the refusal arrives as the subscription's reply."""
    pubsub = client.pubsub()
    try:
        await getattr(pubsub, command)(channel)
        with pytest.raises(NoPermissionError):
            await pubsub.get_message(timeout=2.0)
    finally:
        await pubsub.aclose()


async def _forbidden_everywhere(client: aioredis.Redis) -> None:
    """What neither user may do: keys, the server's administration, other channels."""
    await _refused(client.get("praxiom:key"))
    await _refused(client.set("praxiom:key", "1"))
    await _refused(client.keys("*"))
    await _refused(client.flushall())
    await _refused(client.config_get("*"))
    await _refused(client.execute_command("ACL", "SETUSER", "intruder", "on", "+@all"))
    await _refused(client.eval("return 1", 0))
    await _refused(client.publish("elsewhere", "x"))
    await _subscribe_refused(client, "psubscribe", "praxiom:*")


@dataclass
class Outcome:
    """What one task run end to end showed: its stream, both processes' readiness, the
    gateway's receive count, and every log line of both processes."""

    payloads: list[dict[str, Any]]
    readiness: dict[str, Any]
    runner_readiness: dict[str, Any]
    received: int
    logs: str


async def run_end_to_end(
    settings: Settings, token: str, runner_processes: Any, **runner_env: str
) -> Outcome:
    """The gateway in process with `settings`, a runner process with `runner_env`, one task."""
    runner_port = free_port()
    with captured_logs() as logs:
        gateway = LiveGateway(settings)
        await gateway.start()
        runner = runner_processes(RUNNER_METRICS_PORT=str(runner_port), **runner_env)
        try:
            payloads = await _spawn_and_watch(gateway, token)
            async with aiohttp.ClientSession() as session:
                readiness = await _ready(session, f"{gateway.url}/readyz")
                runner_readiness = await _ready(session, f"http://127.0.0.1:{runner_port}/readyz")
            received = gateway.app[DISPATCHER].stats.messages
        finally:
            await gateway.stop()
    runner_log = runner.log()
    assert runner_log.strip(), "the runner logged nothing to check"
    return Outcome(
        payloads,
        readiness,
        runner_readiness,
        received,
        logs.everything() + runner_log,
    )


def assert_worked(outcome: Outcome, passwords: Iterable[str]) -> None:
    payloads = outcome.payloads
    assert payloads[-1]["status"] == "completed", payloads
    # The runner's progress arrived over Redis while the task ran (the idle re-read is 10 s off).
    assert any(0 < p["progress_pct"] < 100 for p in payloads), payloads
    assert outcome.received >= 2
    gateway_redis = outcome.readiness["redis"]
    assert gateway_redis["status"] == "up", outcome.readiness
    assert gateway_redis["subscription"] == "up", outcome.readiness
    assert outcome.runner_readiness["redis"] == "up", outcome.runner_readiness
    for password in passwords:
        assert password not in outcome.logs


async def test_a_task_runs_end_to_end_with_each_process_as_its_own_user(
    settings: Settings,
    member: IssuedToken,
    acl_redis: AclRedis,
    runner_processes: Any,
) -> None:
    outcome = await run_end_to_end(
        settings.replace(redis_url=acl_redis.url(GATEWAY)),
        member.token,
        runner_processes,
        REDIS_URL=acl_redis.url(RUNNER),
    )
    assert_worked(outcome, acl_redis.passwords.values())


async def _spawn_and_watch(gateway: LiveGateway, token: str) -> list[dict[str, Any]]:
    """Spawn a short task over HTTP and read its stream to the end."""
    async with aiohttp.ClientSession(timeout=stream_timeout(20)) as session:
        spawned = await session.post(
            f"{gateway.url}/api/tasks/spawn",
            json={"task_type": "research", "params": {"step_seconds": 0.3}},
            headers=bearer(token),
        )
        assert spawned.status == 202, await spawned.text()
        task_id = (await spawned.json())["id"]
        url = f"{gateway.url}/api/tasks/{task_id}/progress"
        async with session.get(url, headers=bearer(token)) as response:
            return [event.payload async for event in events(response)]


async def _ready(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async def answer() -> dict[str, Any] | None:
        try:
            async with session.get(url) as response:
                return dict(await response.json())
        except aiohttp.ClientError:
            return None  # the runner's port is not up yet

    return dict(await wait_for(answer, 10))


def test_the_file_as_shipped_does_not_load(tmp_path: Path) -> None:
    """A placeholder left in place is a syntax error, not a known password: Redis will not
    start until each user has a password of its own."""
    started = subprocess.run(
        [redis_server_binary(), "--port", str(free_port()), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
         "--aclfile", str(ACL_FILE)],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert started.returncode != 0
    assert "Aborting Redis startup because of ACL errors" in started.stdout


async def test_a_cancel_reaches_the_stream_though_the_gateway_user_may_not_publish(
    settings: Settings, member: IssuedToken, acl_redis: AclRedis
) -> None:
    """No runner is alive and the idle re-read is minutes away: the cancel reaches the open
    stream through its NOTIFY, which the gateway hears and hands to its streams itself."""
    gateway = LiveGateway(
        settings.replace(redis_url=acl_redis.url(GATEWAY), sse_idle_timeout_s=300)
    )
    await gateway.start()
    try:
        async with aiohttp.ClientSession(timeout=stream_timeout(10)) as session:
            headers = bearer(member.token)
            spawned = await session.post(
                f"{gateway.url}/api/tasks/spawn", json={"task_type": "research"}, headers=headers
            )
            task_id = (await spawned.json())["id"]
            url = f"{gateway.url}/api/tasks/{task_id}/progress"
            async with session.get(url, headers=headers) as response:
                stream = events(response)
                assert (await anext(stream)).payload["status"] == "pending"
                cancel = f"{gateway.url}/api/tasks/{task_id}/cancel"
                assert (await session.post(cancel, headers=headers)).status == 202
                rest = [event.payload async for event in stream]
        offered = gateway.app[TASK_WRITES].offered
    finally:
        await gateway.stop()
    assert [p["status"] for p in rest] == ["cancelled"]
    # The cancel's NOTIFY was read and offered; the spawn's own may have been too, when the
    # listener heard it after the stream (open in a few ms) began watching the task.
    assert offered in (1, 2)


async def test_the_gateway_user_subscribes_and_may_do_nothing_else(acl_redis: AclRedis) -> None:
    client = connect_redis(acl_redis.url(GATEWAY))
    try:
        assert await client.ping()
        pubsub = client.pubsub()
        await pubsub.subscribe(CHANNEL)
        await pubsub.ssubscribe(CHANNEL)
        kinds = [(await pubsub.get_message(timeout=2.0) or {}).get("type") for _ in range(2)]
        assert kinds == ["subscribe", "ssubscribe"]
        await pubsub.aclose()
        # Nobody holding the gateway's password can forge progress.
        await _refused(client.publish(CHANNEL, "{}"))
        await _refused(client.execute_command("SPUBLISH", CHANNEL, "{}"))
        await _forbidden_everywhere(client)
        await _subscribe_refused(client, "subscribe", "elsewhere")
    finally:
        await client.aclose()


async def test_the_runner_user_publishes_and_may_not_subscribe(acl_redis: AclRedis) -> None:
    client = connect_redis(acl_redis.url(RUNNER))
    try:
        assert await client.ping()
        assert await client.publish(CHANNEL, "{}") == 0
        assert await client.execute_command("SPUBLISH", CHANNEL, "{}") == 0
        await _subscribe_refused(client, "subscribe", CHANNEL)
        await _subscribe_refused(client, "ssubscribe", CHANNEL)
        await _forbidden_everywhere(client)
    finally:
        await client.aclose()


@pytest.mark.parametrize("who", ["nobody", "wrong password", "default user"])
async def test_without_a_user_nothing_works(acl_redis: AclRedis, who: str) -> None:
    url = {
        "nobody": acl_redis.anonymous_url,
        "wrong password": acl_redis.url(GATEWAY, "not-the-password"),
        "default user": acl_redis.url(GATEWAY).replace(GATEWAY, "default", 1),
    }[who]
    # RESP2 for nobody: no HELLO on connect, so each command itself reaches the server.
    client = aioredis.Redis.from_url(url, protocol=2 if who == "nobody" else 3)
    try:
        for command in (("PING",), ("PUBLISH", CHANNEL, "{}"), ("SUBSCRIBE", CHANNEL)):
            with pytest.raises(AuthenticationError) as refused:
                await client.execute_command(*command)
            assert who != "nobody" or str(refused.value).startswith("Authentication required")
    finally:
        await client.aclose()


def test_a_standalone_server_refuses_the_cluster_reads_harmlessly(acl_redis: AclRedis) -> None:
    """The file serves both modes: CLUSTER SLOTS is granted, and a standalone server answers it
    with an error, not with data."""
    client = redis.Redis.from_url(acl_redis.url(RUNNER))
    try:
        with pytest.raises(ResponseError, match="cluster support disabled"):
            client.execute_command("CLUSTER", "SLOTS")
    finally:
        client.close()


def test_settings_never_show_the_password(acl_redis: AclRedis) -> None:
    url = acl_redis.url(GATEWAY)
    shown = repr(Settings(redis_url=url))
    assert acl_redis.passwords[GATEWAY] not in shown
    assert f"redis://{GATEWAY}:***@127.0.0.1:{acl_redis.server.port}/0" in shown


def restrict(cluster: LocalRedisCluster, text: str) -> None:
    """Give every node of a cluster built as `default` the ACL file's users, `default` last."""
    rules = [line.split()[1:] for line in text.splitlines() if line.strip()]
    rules.sort(key=lambda rule: rule[0] == "default")
    for port in cluster.all_ports:
        client = redis.Redis(port=port)
        try:
            for name, *rule in rules:
                client.execute_command("ACL", "SETUSER", name, *rule)
        finally:
            client.close()


async def test_in_cluster_mode_each_process_works_as_its_own_user(
    settings: Settings, member: IssuedToken, runner_processes: Any, tmp_path: Path
) -> None:
    """The slot map (CLUSTER SLOTS), the command table (COMMAND), SPUBLISH and SSUBSCRIBE on
    each shard's own connection: all with the file's rules, from seeds carrying credentials."""
    passwords = new_passwords()
    cluster = LocalRedisCluster(tmp_path / "cluster")
    cluster.start()
    try:
        restrict(cluster, acl_text(passwords))
        first, second = cluster.ports[:2]

        def seeds(user: str) -> str:
            return f"redis://{user}:{passwords[user]}@127.0.0.1:{first},127.0.0.1:{second}"

        async with redis.asyncio.Redis(port=first) as anonymous:
            with pytest.raises(AuthenticationError):
                await anonymous.execute_command("CLUSTER", "SLOTS")
        outcome = await run_end_to_end(
            settings.replace(redis_url=seeds(GATEWAY), redis_cluster=True),
            member.token,
            runner_processes,
            REDIS_URL=seeds(RUNNER),
            REDIS_CLUSTER="1",
        )
    finally:
        cluster.stop()
    assert_worked(outcome, passwords.values())

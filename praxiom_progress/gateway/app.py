"""`create_app(settings)`: the gateway, with each resource set up and torn down in cleanup_ctx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from praxiom_progress.gateway import (
    access,
    assets,
    browsers,
    cors,
    health,
    limits,
    listing,
    malformed,
    metrics,
    openapi,
    sse,
    views,
)
from praxiom_progress.gateway.access_log import echo_request_id
from praxiom_progress.gateway.catalogue import TaskTypeCatalogue
from praxiom_progress.gateway.cluster import ClusterDispatcher
from praxiom_progress.gateway.collection import CollectionTuning
from praxiom_progress.gateway.dependencies import DependencyWatch
from praxiom_progress.gateway.direct_write import DirectWrite
from praxiom_progress.gateway.dispatcher import ProgressDispatcher
from praxiom_progress.gateway.dispatching import Dispatcher
from praxiom_progress.gateway.front import FrontDoor
from praxiom_progress.gateway.idle import IdleSweeper
from praxiom_progress.gateway.keepalive import Pinger
from praxiom_progress.gateway.keys import (
    ACCESS_CHANGES,
    CATALOGUE,
    CLIENT_ADDRESSES,
    DIRECT_WRITE,
    DISPATCHER,
    FRONT_DOOR,
    GATEWAY_STORE,
    GC_TUNING,
    IDLE_SWEEPER,
    LIMIT_STATS,
    LOOP_HEALTH,
    METRICS,
    OPENING_HOOKS,
    PINGER,
    READ_ROUTING,
    REDIS,
    SETTINGS,
    STREAM_ACCESS,
    STREAM_STATS,
    STREAMS,
    TASK_COUNT,
    TASK_STORE,
    TASK_WRITES,
    WORKSPACE_READS,
    WORKSPACE_STREAMS,
)
from praxiom_progress.gateway.listener import DatabaseEvents
from praxiom_progress.gateway.loophealth import LoopHealth
from praxiom_progress.gateway.opening import OpeningHooks
from praxiom_progress.gateway.remote import ClientAddresses
from praxiom_progress.gateway.replica import ReadRouting
from praxiom_progress.gateway.revocation import AccessChanges
from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.gateway.stream import StreamStats
from praxiom_progress.gateway.tasks_alive import TaskCount
from praxiom_progress.gateway.token_use import TokenUse
from praxiom_progress.gateway.workspace_reads import WorkspaceReads
from praxiom_progress.gateway.workspace_sse import recheck_workspace_streams, workspace_progress
from praxiom_progress.gateway.written import TaskWrites
from praxiom_progress.taskstate.cancellation import cancel_and_wait
from praxiom_progress.taskstate.db import Database, QueryObserver
from praxiom_progress.taskstate.publisher import (
    connect_redis,
    connect_redis_cluster,
)
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.slotmap import SlotMap
from praxiom_progress.taskstate.store import TaskStore


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    # minsize=0: start while PostgreSQL is down; requests get 503 until it is back.
    db = await Database.connect(
        settings,
        minsize=0,
        maxsize=settings.database_pool_size,
        name="praxiom-gateway",
        on_query=app[METRICS].observe_query,
    )
    routing = await _read_routing(settings, db, app[METRICS].observe_query)
    app[READ_ROUTING] = routing
    app[TASK_STORE] = TaskStore(db)
    token_use = TokenUse(
        db, interval_s=settings.token_last_used_interval_s, enabled=settings.gateway_writes
    )
    app[GATEWAY_STORE] = GatewayStore(db, token_use, reads=routing)
    app[STREAM_ACCESS] = access.StreamAccess(app[GATEWAY_STORE], app[LIMIT_STATS])
    app[WORKSPACE_READS] = WorkspaceReads(
        db, recent_s=settings.sse_workspace_recent_s, max_tasks=settings.sse_workspace_max_tasks
    )
    app[CATALOGUE] = TaskTypeCatalogue(
        db, stale_after_s=settings.runner_stale_after_s, allowed=settings.task_types
    )
    lag_watch = asyncio.create_task(routing.run(), name="standby-lag") if routing else None
    yield
    if routing is not None and lag_watch is not None:
        await cancel_and_wait([lag_watch])
        await routing.standby.close()
    await db.close()


async def _read_routing(
    settings: Settings, primary: Database, on_query: QueryObserver
) -> ReadRouting | None:
    """With DATABASE_READ_URL, a pool on the standby and the routing in front of both."""
    if settings.database_read_url is None or settings.database_read_url == settings.database_url:
        return None
    standby = await Database.connect(
        settings,
        minsize=0,
        maxsize=settings.database_pool_size,
        name="praxiom-gateway-reads",
        on_query=on_query,
        url=settings.database_read_url,
    )
    return ReadRouting(
        primary,
        standby,
        max_lag_s=settings.database_read_max_lag_s,
        check_interval_s=settings.database_read_check_interval_s,
    )


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    lag = app[STREAM_STATS].lag
    dispatcher: Dispatcher
    client: aioredis.Redis | RedisCluster
    clients: list[aioredis.Redis | RedisCluster]
    if settings.redis_cluster:
        client = connect_redis_cluster(settings.redis_url)
        slots = SlotMap(client, settings.redis_url)  # one map for subscribing and publishing
        dispatcher = ClusterDispatcher(slots, lag=lag, chunk=settings.sse_deliver_chunk)
        clients = [client]
    else:
        client = connect_redis(settings.redis_url)
        subscriber = connect_redis(settings.redis_url, subscriber=True)  # RESP2: see there
        dispatcher = ProgressDispatcher(
            subscriber, lag=lag, hooks=app[OPENING_HOOKS], chunk=settings.sse_deliver_chunk
        )
        clients = [client, subscriber]
    app[REDIS] = client
    app[DISPATCHER] = dispatcher
    await dispatcher.start()  # on a cluster: the slot map is read before the gateway serves
    yield
    await dispatcher.close()
    for each in clients:
        await each.aclose()


async def _loop_health(app: web.Application) -> AsyncIterator[None]:
    """The stall ticker, the collection timer and the collector's tuning (one per app: a
    test may run several gateways in one process, each measuring the same loop)."""
    settings = app[SETTINGS]
    health = app[LOOP_HEALTH] = LoopHealth(settings.gateway_loop_stall_tick_s)
    tuning = app[GC_TUNING] = CollectionTuning(
        app[STREAM_STATS],
        thresholds=settings.gateway_gc_thresholds,
        freeze_after=settings.gateway_gc_freeze_after,
        check_s=settings.gateway_gc_freeze_check_s,
    )
    tasks = app[TASK_COUNT] = TaskCount()  # for /metrics, without walking every task
    health.start()
    tuning.start()
    tasks.start()
    running = asyncio.create_task(tuning.run(), name="gc-tuning")
    yield
    await cancel_and_wait([running])
    tasks.stop()
    tuning.stop()
    health.stop()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The tasks that run beside the requests: the idle sweeper, the LISTEN for access
    changes and unpublished task writes, the dependency watch and the streams' pinger."""
    workspaces, reads = app[WORKSPACE_STREAMS], app[WORKSPACE_READS]
    sweeper = IdleSweeper(
        app[STREAMS],
        app[GATEWAY_STORE],
        app[STREAM_STATS],
        app[LIMIT_STATS],
        idle_timeout_s=app[SETTINGS].sse_idle_timeout_s,
        recheck_more=lambda: recheck_workspace_streams(workspaces, reads, app[LIMIT_STATS]),
    )
    app[IDLE_SWEEPER] = sweeper
    db, redis = app[GATEWAY_STORE].db, app[REDIS]
    changes = AccessChanges(sweeper)
    app[ACCESS_CHANGES] = changes
    writes = TaskWrites(app[GATEWAY_STORE], app[DISPATCHER], workspaces)
    app[TASK_WRITES] = writes
    events = DatabaseEvents(db, changes, writes, retry_s=app[SETTINGS].database_listen_retry_s)
    watch = DependencyWatch(
        {"PostgreSQL": lambda: db.fetch_one("SELECT 1"), "Redis": lambda: redis.ping()}
    )
    running = [
        asyncio.create_task(sweeper.run(), name="idle-sweeper"),
        asyncio.create_task(events.run(), name="database-events"),
        asyncio.create_task(watch.run(), name="dependency-watch"),
        asyncio.create_task(app[GATEWAY_STORE].token_use.run(), name="token-use"),
        asyncio.create_task(app[PINGER].run(), name="pinger"),
    ]
    yield
    await cancel_and_wait(running)  # the LISTEN may be mid-connect in aiopg
    await writes.close()
    await app[GATEWAY_STORE].token_use.close()


def create_app(settings: Settings, *, demo: bool = False) -> web.Application:
    """The gateway; `demo` adds the demo page and its sign-in (dev mode only, never production)."""
    # A request body over GATEWAY_MAX_BODY_BYTES (docs/design.md: 1 MiB) gets 413.
    door = FrontDoor(settings)
    app = web.Application(
        # The only one (gateway.front says why); a stream takes its own visit.
        middlewares=[door.middleware(inside=(sse.progress,))],
        client_max_size=settings.gateway_max_body_bytes,
    )
    app[FRONT_DOOR] = door
    app[SETTINGS] = settings
    app[CLIENT_ADDRESSES] = ClientAddresses(settings.gateway_trusted_proxies)
    limits.setup(app, settings)
    app[STREAMS] = set()
    app[WORKSPACE_STREAMS] = set()
    app[STREAM_STATS] = StreamStats()
    app[DIRECT_WRITE] = DirectWrite(settings.sse_direct_write)
    app[PINGER] = Pinger(settings.sse_ping_interval_s, settings.sse_send_timeout_s)
    app[OPENING_HOOKS] = OpeningHooks()  # a test may replace it before the app starts
    metrics.setup(app)
    app.on_response_prepare.append(echo_request_id)
    app.on_response_prepare.append(browsers.add_security_headers)
    app.on_response_prepare.append(malformed.name_the_server)
    app.cleanup_ctx.extend([_loop_health, _database, _redis, _background])
    app.on_shutdown.append(sse.close_all_streams)
    writes = settings.gateway_writes
    app.router.add_post("/api/tasks/spawn", views.spawn if writes else views.writes_off)
    app.router.add_get("/api/task-types", views.task_types, allow_head=False)
    app.router.add_get("/api/tasks", listing.list_tasks, allow_head=False)
    app.router.add_get("/api/tasks/{task_id}/progress", sse.progress, allow_head=False)
    app.router.add_get("/api/tasks/{task_id}/status", views.status, allow_head=False)
    app.router.add_get(
        "/api/workspaces/{workspace_id}/progress", workspace_progress, allow_head=False
    )
    app.router.add_post("/api/tasks/{task_id}/cancel", views.cancel if writes else views.writes_off)
    # `spawn` is not a task id: GET /api/tasks/spawn must be 405, not "no such task".
    app.router.add_get(r"/api/tasks/{task_id:(?!spawn$)[^/]+}", views.record, allow_head=False)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    openapi.setup(app, settings)
    assets.setup(app, settings)
    cors.setup(app, settings.cors_allowed_origins)
    if demo:
        from praxiom_progress.gateway import demo as demo_page

        demo_page.setup(app)
    return app

"""Every piece of the gateway's shared state, as a typed AppKey, in one place.

The types are imported for the checker only: the modules that own them import this one, so a
runtime import here would make a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from praxiom_progress.gateway.store import GatewayStore
from praxiom_progress.taskstate.settings import Settings
from praxiom_progress.taskstate.store import TaskStore

if TYPE_CHECKING:
    from praxiom_progress.gateway.access import StreamAccess
    from praxiom_progress.gateway.catalogue import TaskTypeCatalogue
    from praxiom_progress.gateway.collection import CollectionTuning
    from praxiom_progress.gateway.direct_write import DirectWrite
    from praxiom_progress.gateway.dispatching import Dispatcher
    from praxiom_progress.gateway.front import FrontDoor
    from praxiom_progress.gateway.idle import IdleSweeper
    from praxiom_progress.gateway.keepalive import Pinger
    from praxiom_progress.gateway.limits import LimitStats, RateLimiter, StreamSlots
    from praxiom_progress.gateway.loophealth import LoopHealth
    from praxiom_progress.gateway.metrics import GatewayMetrics
    from praxiom_progress.gateway.openapi import OpenApiDocument
    from praxiom_progress.gateway.opening import OpeningHooks
    from praxiom_progress.gateway.remote import ClientAddresses
    from praxiom_progress.gateway.replica import ReadRouting
    from praxiom_progress.gateway.revocation import AccessChanges
    from praxiom_progress.gateway.stream import ProgressStream, StreamStats
    from praxiom_progress.gateway.tasks_alive import TaskCount
    from praxiom_progress.gateway.workspace import WorkspaceStream
    from praxiom_progress.gateway.workspace_reads import WorkspaceReads
    from praxiom_progress.gateway.written import TaskWrites

SETTINGS = web.AppKey("settings", Settings)
TASK_STORE = web.AppKey("task_store", TaskStore)
GATEWAY_STORE = web.AppKey("gateway_store", GatewayStore)
#: The client the subscription uses; /readyz pings it.
REDIS: web.AppKey[aioredis.Redis | RedisCluster] = web.AppKey("redis")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
#: With DATABASE_READ_URL: reads from the standby while it keeps up (gateway.replica).
READ_ROUTING: web.AppKey[ReadRouting | None] = web.AppKey("read_routing")

# -- streams ------------------------------------------------------------------------------------
#: Open streams: plain sets (each stream leaves its set when it ends), a weak reference less
#: per stream than a WeakSet, and quicker to walk for the idle sweeper.
STREAMS: web.AppKey[set[ProgressStream]] = web.AppKey("streams")
STREAM_STATS: web.AppKey[StreamStats] = web.AppKey("stream_stats")
#: Workspace streams (gateway.workspace), and their reads (gateway.workspace_reads).
WORKSPACE_STREAMS: web.AppKey[set[WorkspaceStream]] = web.AppKey("workspace_streams")
WORKSPACE_READS: web.AppKey[WorkspaceReads] = web.AppKey("workspace_reads")
#: SSE_DIRECT_WRITE and its guard (gateway.direct_write).
DIRECT_WRITE: web.AppKey[DirectWrite] = web.AppKey("direct_write")
#: The one task that writes every open stream's keep-alive comments (gateway.keepalive).
PINGER: web.AppKey[Pinger] = web.AppKey("pinger")
STREAM_ACCESS: web.AppKey[StreamAccess] = web.AppKey("stream_access")
IDLE_SWEEPER: web.AppKey[IdleSweeper] = web.AppKey("idle_sweeper")
#: The test seam in the open sequence of a stream (gateway.opening); a no-op in production.
OPENING_HOOKS: web.AppKey[OpeningHooks] = web.AppKey("opening_hooks")
#: Revocation at once: every stream re-checked when PostgreSQL announces an access change.
ACCESS_CHANGES: web.AppKey[AccessChanges] = web.AppKey("access_changes")
#: Spawns and cancels nobody published, handed to this gateway's streams (gateway.written).
TASK_WRITES: web.AppKey[TaskWrites] = web.AppKey("task_writes")

# -- limits, metrics, documents -----------------------------------------------------------------
LIMIT_STATS: web.AppKey[LimitStats] = web.AppKey("limit_stats")
STREAM_SLOTS: web.AppKey[StreamSlots] = web.AppKey("stream_slots")
SPAWN_LIMITER: web.AppKey[RateLimiter] = web.AppKey("spawn_limiter")
AUTH_FAILURE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("auth_failure_limiter")
#: GATEWAY_TRUSTED_PROXIES, parsed: who the client is behind a proxy (gateway.remote).
CLIENT_ADDRESSES: web.AppKey[ClientAddresses] = web.AppKey("client_addresses")
#: The front door's checks, for the handler that takes its own visit (gateway.front).
FRONT_DOOR: web.AppKey[FrontDoor] = web.AppKey("front_door")
#: The task types spawn accepts, with their params schemas (the runners' catalogue).
CATALOGUE: web.AppKey[TaskTypeCatalogue] = web.AppKey("catalogue")
METRICS: web.AppKey[GatewayMetrics] = web.AppKey("metrics")
#: Loop stalls and collection pauses (gateway.loophealth), and the collector's tuning
#: (gateway.collection).
LOOP_HEALTH: web.AppKey[LoopHealth] = web.AppKey("loop_health")
TASK_COUNT: web.AppKey[TaskCount] = web.AppKey("task_count")
GC_TUNING: web.AppKey[CollectionTuning] = web.AppKey("gc_tuning")
OPENAPI_DOCUMENT: web.AppKey[OpenApiDocument] = web.AppKey("openapi_document")
DEMO_TEMPLATE = web.AppKey("demo_template", str)

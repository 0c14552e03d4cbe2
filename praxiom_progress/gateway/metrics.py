"""`GET /metrics`: the gateway's Prometheus metrics, in a registry of the app's own.

Most numbers already exist as plain counters on the streams' and the
dispatcher's stats objects; a custom collector reads them at scrape time, so
the per-event path pays nothing for metrics. Only what has no counter yet is
recorded directly: stream opens by result (once per request, when the answer's
headers go out) and database query latency (through `Database`'s `on_query`). Pending tasks of
types no live runner serves are read from PostgreSQL by each scrape, before collecting.
The registry is per app, never prometheus_client's global one: tests run
several gateways in one process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from praxiom_progress.gateway import keys
from praxiom_progress.gateway.catalogue import UnservedType
from praxiom_progress.gateway.cluster import ClusterDispatcher
from praxiom_progress.gateway.collection import CollectionTuning
from praxiom_progress.gateway.dispatching import Dispatcher
from praxiom_progress.gateway.keys import CATALOGUE, DISPATCHER, LIMIT_STATS, METRICS
from praxiom_progress.gateway.limits import LimitStats
from praxiom_progress.gateway.loophealth import LoopHealth
from praxiom_progress.gateway.replica import ReadRouting
from praxiom_progress.gateway.stream import ProgressStream
from praxiom_progress.gateway.tasks_alive import TaskCount
from praxiom_progress.taskstate.metrics import db_query_histogram

#: Stream routes whose answers `stream_opens` counts: a task's, and a workspace's.
_PROGRESS_ROUTES = ("/api/tasks/{task_id}/progress", "/api/workspaces/{workspace_id}/progress")
_USUAL_RESULTS = ("200", "204", "401", "403", "404")


class GatewayMetrics:
    """The registry and the few metrics recorded as they happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.stream_opens = Counter(
            "praxiom_gateway_stream_opens",
            "Stream requests by the status they were answered with (200 opened, 204 already "
            "finished, 401/403/404 refused, 503 database down)",
            ["result"],
            registry=self.registry,
        )
        for result in _USUAL_RESULTS:
            self.stream_opens.labels(result)
        self.db_query = db_query_histogram(self.registry)
        # The process's CPU, memory and file descriptors, collected off the event loop:
        # counting open descriptors lists /proc/self/fd, 8 ms at 10,000 streams.
        self.process_registry = CollectorRegistry()
        ProcessCollector(registry=self.process_registry)

    def observe_query(self, seconds: float) -> None:
        self.db_query.observe(seconds)


class StreamCollector(Collector):
    """Reads `StreamStats` and the dispatcher's state at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        dispatcher = self._app.get(DISPATCHER)  # absent until the app has started
        yield from _stream_metrics(self._app, dispatcher)
        yield from _process_metrics(dispatcher, self._app.get(keys.TASK_COUNT))
        yield from _limit_metrics(self._app[LIMIT_STATS])
        direct_write = self._app.get(keys.DIRECT_WRITE)
        if direct_write is not None:
            yield _counter(
                "praxiom_gateway_direct_writes_refused",
                "Streams whose response could not take direct socket writes (compressed or "
                "not chunked): they write through aiohttp instead",
                direct_write.refused,
            )
        if dispatcher is not None:
            yield from _dispatcher_metrics(dispatcher)
        health = self._app.get(keys.LOOP_HEALTH)
        if health is not None:
            yield from _loop_metrics(health, self._app.get(keys.GC_TUNING))
        routing = self._app.get(keys.READ_ROUTING)
        if routing is not None:
            yield from _standby_metrics(routing)
        catalogue = self._app.get(CATALOGUE)
        yield from _unserved_metrics(catalogue.unserved_last if catalogue is not None else [])


def _standby_metrics(routing: ReadRouting) -> Iterator[Metric]:
    """With DATABASE_READ_URL: whether the standby keeps up, and where reads went."""
    yield _gauge(
        "praxiom_gateway_standby_fresh",
        "1 while the standby has replayed every commit older than DATABASE_READ_MAX_LAG "
        "(reads go to it), 0 while reads go to the primary",
        1.0 if routing.fresh() else 0.0,
    )
    reads = CounterMetricFamily(
        "praxiom_gateway_database_reads",
        "Reads routed by DATABASE_READ_URL, by the server that answered",
        labels=["server"],
    )
    reads.add_metric(["standby"], routing.standby_reads)
    reads.add_metric(["primary"], routing.primary_reads)
    yield reads


def _unserved_metrics(unserved: list[UnservedType]) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        "praxiom_gateway_unserved_pending_tasks",
        "Pending tasks of a type no live runner serves (they wait until one does)",
        labels=["task_type"],
    )
    oldest = GaugeMetricFamily(
        "praxiom_gateway_unserved_oldest_pending_seconds",
        "Age of the oldest pending task of a type no live runner serves",
        labels=["task_type"],
    )
    for entry in unserved:
        pending.add_metric([entry.task_type], entry.pending)
        oldest.add_metric([entry.task_type], entry.oldest_pending_s)
    yield pending
    yield oldest


def _stream_metrics(app: web.Application, dispatcher: Dispatcher | None) -> Iterator[Metric]:
    stats = app[keys.STREAM_STATS]
    yield _gauge("praxiom_gateway_streams_open", "Open SSE streams", stats.open)
    yield _gauge(
        "praxiom_gateway_streams_polling",
        "Open streams polling PostgreSQL because their Redis subscription (shard) is down",
        _polling(app, dispatcher),
    )
    written_by_dispatcher = dispatcher.stats.written if dispatcher is not None else 0
    yield _counter(
        "praxiom_gateway_events_sent",
        "SSE events written (by the dispatcher straight to sockets, or by streams)",
        stats.events + written_by_dispatcher,
    )
    yield _counter(
        "praxiom_gateway_idle_reemits",
        "Rows re-read and re-sent after SSE_IDLE_TIMEOUT without a message",
        stats.idle_reemits,
    )
    yield _counter(
        "praxiom_gateway_db_polls", "Row reads by streams polling PostgreSQL", stats.polls
    )
    yield _counter(
        "praxiom_gateway_suspect_version_jumps",
        "Messages more than SSE_MAX_VERSION_JUMP versions ahead of a stream: checked against "
        "PostgreSQL, never sent as they came",
        stats.suspect_jumps,
    )
    yield _counter(
        "praxiom_gateway_poll_limit_closes",
        "Streams closed after SSE_POLL_LIMIT polls",
        stats.poll_limit_closes,
    )
    lag = HistogramMetricFamily(
        "praxiom_gateway_publish_to_send_lag_seconds",
        "From the dispatcher receiving a message to its socket write (sampled: at most one "
        "message per 50 ms; written in one pass, it is measured after the last socket)",
        buckets=stats.lag.cumulative(),
        sum_value=stats.lag.sum_s,
    )
    yield lag


class ShardCollector(Collector):
    """On a Redis Cluster: which shards this gateway's subscriptions reach, at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        dispatcher = self._app.get(DISPATCHER)  # absent until the app has started
        if not isinstance(dispatcher, ClusterDispatcher):
            return
        shard_up = GaugeMetricFamily(
            "praxiom_gateway_redis_shard_up",
            "On a Redis Cluster: 1 while the subscription to a shard (its primary, host:port) "
            "is connected; shards that serve no slot and hold no channel are not listed",
            labels=["shard"],
        )
        for name, up in sorted(dispatcher.shards_up.items()):
            shard_up.add_metric([name], int(up))
        yield shard_up


def _polling(app: web.Application, dispatcher: Dispatcher | None) -> int:
    """The streams whose subscription is down: every one on a single Redis, only those of
    the shards that are down on a cluster."""
    if dispatcher is None:
        return app[keys.STREAM_STATS].open
    streams: set[ProgressStream] = app[keys.STREAMS]
    if not isinstance(dispatcher, ClusterDispatcher):  # one subscription: all up or all down
        return 0 if dispatcher.available else len(streams)
    return sum(not dispatcher.available_for(stream) for stream in list(streams))


def _process_metrics(dispatcher: Dispatcher | None, tasks: TaskCount | None) -> Iterator[Metric]:
    redis_up = dispatcher is not None and dispatcher.available
    yield _gauge(
        "praxiom_gateway_asyncio_tasks",
        "asyncio tasks alive in the gateway process: flat under connection churn, or a leak",
        tasks.alive if tasks is not None else 0,  # a count kept up, not a walk of every task
    )
    yield _gauge(
        "praxiom_gateway_redis_subscription_up",
        "1 while the shared Redis subscription is connected",
        int(redis_up),
    )


def _dispatcher_metrics(dispatcher: Dispatcher) -> Iterator[Metric]:
    d = dispatcher.stats
    yield _counter(
        "praxiom_gateway_redis_subscription_connects",
        "Times the shared Redis subscription came up",
        d.connections,
    )
    yield _counter("praxiom_gateway_redis_messages", "Pub/sub messages received", d.messages)
    yield _counter(
        "praxiom_gateway_events_coalesced",
        "Updates dropped because a slow stream had a newer one to send (coalescing)",
        d.coalesced,
    )
    yield _counter(
        "praxiom_gateway_redis_undecodable",
        "Pub/sub messages ignored because they were not a payload",
        d.undecodable,
    )
    yield _counter(
        "praxiom_gateway_redis_mismatched",
        "Pub/sub messages dropped because their task id was not their channel's (forged)",
        d.mismatched,
    )
    yield _gauge(
        "praxiom_gateway_subscribed_channels",
        "Task channels the shared subscription listens to",
        dispatcher.subscribed_channels,
    )


def _limit_metrics(limits: LimitStats) -> Iterator[Metric]:
    yield _counter(
        "praxiom_gateway_streams_refused_per_principal",
        "Streams refused with 429: the caller held STREAMS_PER_PRINCIPAL already",
        limits.streams_refused_principal,
    )
    yield _counter(
        "praxiom_gateway_streams_refused_full",
        "Streams refused with 503: this process held GATEWAY_MAX_STREAMS already",
        limits.streams_refused_full,
    )
    yield _counter(
        "praxiom_gateway_spawns_rate_limited",
        "Spawns refused with 429: the caller was over SPAWN_RATE_LIMIT",
        limits.spawns_rate_limited,
    )
    yield _counter(
        "praxiom_gateway_bodies_too_large",
        "Requests refused with 413: a body over GATEWAY_MAX_BODY_BYTES",
        limits.bodies_too_large,
    )
    yield _counter(
        "praxiom_gateway_cross_origin_refused",
        "Cookie-authenticated writes refused with 403: their Origin was not allowed",
        limits.cross_origin_refused,
    )
    yield _counter(
        "praxiom_gateway_auth_failures_limited",
        "Requests refused with 429: their client address was over AUTH_FAILURES_PER_MINUTE",
        limits.auth_failures_limited,
    )
    yield _counter(
        "praxiom_gateway_streams_access_lost",
        "Open streams ended because the caller's token or access went away",
        limits.streams_access_lost,
    )


def _loop_metrics(health: LoopHealth, tuning: CollectionTuning | None) -> Iterator[Metric]:
    stalls = health.ticker.stalls
    yield HistogramMetricFamily(
        "praxiom_gateway_loop_stall_seconds",
        "How late a timer due every GATEWAY_LOOP_STALL_TICK ran: the event loop was held "
        "that long (every stream waited)",
        buckets=stalls.cumulative(),
        sum_value=stalls.sum_s,
    )
    busy = health.ticker.busy
    yield HistogramMetricFamily(
        "praxiom_gateway_loop_stall_cpu_seconds",
        "Of each loop stall, the CPU time the process itself used (the rest it waited for a "
        "CPU: a busy host)",
        buckets=busy.cumulative(),
        sum_value=busy.sum_s,
    )
    pauses = HistogramMetricFamily(
        "praxiom_gateway_gc_pause_seconds",
        "Garbage collections by generation and how long each held the event loop",
        labels=["generation"],
    )
    for generation, histogram in health.gc.pauses.items():
        pauses.add_metric([str(generation)], histogram.cumulative(), histogram.sum_s)
    yield pauses
    # No count of the frozen objects: gc.get_freeze_count() walks them all (100 ms at 10,000
    # streams, a stall at every scrape).
    if tuning is not None:
        yield _counter(
            "praxiom_gateway_gc_freezes",
            "Freezes after a burst of stream opens (GATEWAY_GC_FREEZE_AFTER)",
            tuning.freezes,
        )
        yield _counter(
            "praxiom_gateway_gc_compactions",
            "Full collections of everything frozen, after as many frozen streams had closed",
            tuning.compactions,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


async def _count_stream_open(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: once per request, as its status goes out."""
    resource = request.match_info.route.resource
    if resource is not None and resource.canonical in _PROGRESS_ROUTES:
        request.app[METRICS].stream_opens.labels(str(response.status)).inc()


async def metrics_view(request: web.Request) -> web.Response:
    catalogue = request.app.get(CATALOGUE)
    if catalogue is not None:
        try:
            async with asyncio.timeout(1.0):
                await catalogue.unserved()
        except Exception:  # PostgreSQL down or slow: the last answer is shown
            pass
    metrics = request.app[METRICS]
    process = await asyncio.to_thread(generate_latest, metrics.process_registry)
    body = generate_latest(metrics.registry) + process
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> GatewayMetrics:
    """Add `/metrics` and the collectors; returns the metrics for `Database`'s `on_query`."""
    metrics = GatewayMetrics()
    metrics.registry.register(StreamCollector(app))
    metrics.registry.register(ShardCollector(app))
    app[METRICS] = metrics
    app.on_response_prepare.append(_count_stream_open)
    app.router.add_get("/metrics", metrics_view)
    return metrics

"""The runner's Prometheus metrics, in a registry of the runner's own.

The task counts already live on `Runner.stats` and `ProgressPublisher.stats`;
a custom collector reads them at scrape time, so the claim loop and the
handlers do no metrics work. Two latencies are recorded as they happen: every
PostgreSQL statement (through `Database`'s `on_query`) and each
`report_progress` statement (through the `Runner`'s `on_progress_write`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from praxiom_progress.runner.worker import Runner
from praxiom_progress.taskstate.metrics import DB_BUCKETS_S, db_query_histogram


class RunnerMetrics:
    """The registry and the latencies recorded as they happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.db_query = db_query_histogram(self.registry)
        self.report_progress = Histogram(
            "praxiom_runner_report_progress_duration_seconds",
            "The guarded progress UPDATE behind report_progress (one statement writes every "
            "report made while the previous one was in flight)",
            buckets=DB_BUCKETS_S,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def observe_query(self, seconds: float) -> None:
        self.db_query.observe(seconds)

    def watch(self, runner: Runner) -> None:
        """Export `runner`'s counts from now on."""
        self.registry.register(RunnerCollector(runner))


#: (metric name without _total, help, attribute of RunnerStats)
_TASK_COUNTERS = (
    ("praxiom_runner_tasks_claimed", "Tasks this runner claimed", "claimed"),
    ("praxiom_runner_tasks_completed", "Tasks this runner completed", "completed"),
    (
        "praxiom_runner_tasks_failed",
        "Tasks this runner failed (handler error or timeout)",
        "failed",
    ),
    ("praxiom_runner_tasks_timed_out", "Failed tasks that hit their timeout", "timed_out"),
    (
        "praxiom_runner_tasks_cancelled",
        "Running tasks stopped because their row was cancelled (or reaped by another runner)",
        "withdrawn",
    ),
    ("praxiom_runner_tasks_reaped", "Stale tasks this runner's reaper failed", "reaped"),
    (
        "praxiom_runner_tasks_handed_back",
        "Tasks re-queued as pending at shutdown",
        "requeued",
    ),
    ("praxiom_runner_tasks_retried", "Failed attempts let go for a retry", "retried"),
)


class RunnerCollector(Collector):
    """Reads `RunnerStats` and `PublishStats` at scrape time."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def collect(self) -> Iterator[Metric]:
        stats = self._runner.stats
        for name, documentation, attr in _TASK_COUNTERS:
            yield CounterMetricFamily(name, documentation, value=getattr(stats, attr))
        yield GaugeMetricFamily(
            "praxiom_runner_tasks_running", "Tasks running now", value=self._runner.running
        )
        yield GaugeMetricFamily(
            "praxiom_runner_concurrency",
            "Most tasks this runner runs at once",
            value=self._runner.settings.runner_concurrency,
        )
        yield from self._handler_metrics()
        throttled = self._runner.throttle.stats
        yield CounterMetricFamily(
            "praxiom_runner_progress_reports",
            "report_progress calls accepted",
            value=throttled.accepted,
        )
        yield CounterMetricFamily(
            "praxiom_runner_progress_writes",
            "Progress rows written for them (at most one per task per interval)",
            value=throttled.written,
        )
        published = self._runner.publisher.stats
        yield CounterMetricFamily(
            "praxiom_runner_publishes", "Payloads published to Redis", value=published.published
        )
        yield CounterMetricFamily(
            "praxiom_runner_publish_failures",
            "Publishes that failed (Redis down); the state is in PostgreSQL all the same",
            value=published.failed,
        )
        yield CounterMetricFamily(
            "praxiom_runner_publishes_skipped",
            "Publishes skipped without trying, shortly after a failure",
            value=published.skipped,
        )

    def _handler_metrics(self) -> Iterator[Metric]:
        stalls = CounterMetricFamily(
            "praxiom_runner_loop_stalls",
            "Times the event loop did not answer within RUNNER_LOOP_STALL, by the task type it "
            "was running (blocking code in an async handler)",
            labels=["task_type"],
        )
        for task_type, count in sorted(self._runner.watchdog.stalls.items()):
            stalls.add_metric([task_type], count)
        yield stalls
        invoker = self._runner.invoker
        yield GaugeMetricFamily(
            "praxiom_runner_handler_threads",
            "Threads running plain def handlers now, those the runner stopped waiting for "
            "(timed out, cancelled) included",
            value=invoker.threads.alive,
        )
        yield GaugeMetricFamily(
            "praxiom_runner_handler_processes",
            "Child processes running process-isolated handlers now",
            value=len(invoker.processes.alive),
        )

"""The one metric both processes export: PostgreSQL statement latency, defined once so the
gateway's and the runner's series share a name, a help text and buckets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

#: Buckets for database statements, in seconds.
DB_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def db_query_histogram(registry: CollectorRegistry) -> Histogram:
    """`praxiom_db_query_duration_seconds` in `registry`: fed by `Database`'s `on_query`."""
    return Histogram(
        "praxiom_db_query_duration_seconds",
        "PostgreSQL statement latency, pool wait included",
        buckets=DB_BUCKETS_S,
        registry=registry,
    )

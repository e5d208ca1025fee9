"""The receiver's Prometheus metrics, served by ``GET /metrics`` (see the README's "Metrics").

``ReceiverMetrics(registry)`` defines every receiver metric once, in the registry it is
given (a fresh one by default, never the global one, so tests and several apps in one
process do not share counters). The webhook path only increments pre-bound children:
a dictionary look-up and a locked add per request, no label resolution.

==========================================  =========  ==================================
``wabahooks_webhook_requests_total``        counter    by ``outcome`` (the log line's)
``wabahooks_intake_seconds``                histogram  time to a confirmed Redis write
``wabahooks_intake_batch_size``             histogram  intakes sent per group commit
``wabahooks_redis_memory_bytes``            gauge      by ``kind``: used, maxmemory, the marks
``wabahooks_unparsed_kept_total``           counter    signed bodies the parser refused, kept
==========================================  =========  ==================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from service.redisguard import MemoryState

__all__ = ["CONTENT_TYPE", "OUTCOMES", "ReceiverMetrics"]

#: Every outcome the receiver logs for a webhook request (the ``outcome`` label).
OUTCOMES = (
    "accepted",
    "duplicate",
    "bad_signature",
    "bad_request",
    "bad_content_type",
    "bad_timestamp",
    "too_large",
    "body_timeout",
    "unparsed",
    "redis_full",
    "verify_busy",
    "unavailable",
)
#: The Content-Type of :meth:`ReceiverMetrics.render` (Prometheus text format).
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Intakes take about a millisecond; the deadline (2 s by default) bounds the slowest.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ReceiverMetrics:
    """The receiver's metrics, in ``registry`` (default: a registry of their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "wabahooks_webhook_requests",
            "Webhook requests answered, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "wabahooks_intake_seconds",
            "Seconds from submitting an intake to Redis confirming it (accepted or duplicate).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "wabahooks_intake_batch_size",
            "Intakes written to Redis together by one group commit.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.redis_memory = Gauge(
            "wabahooks_redis_memory_bytes",
            "Redis memory as the receiver last read it (INFO memory): used, maxmemory (0: no "
            "limit), the high-water mark from which events are refused and the low mark below "
            "which they are admitted again (0: none).",
            ["kind"],
            registry=self.registry,
        )
        self.unparsed = Counter(
            "wabahooks_unparsed_kept",
            "Signed bodies the parser refused, kept raw in the unparsed stream.",
            registry=self.registry,
        )
        # Pre-bound children: every outcome is exported (at 0) from the start, and the
        # webhook path does no label look-up.
        self._by_outcome = {outcome: self.requests.labels(outcome) for outcome in OUTCOMES}
        self.observe_intake = self.intake_seconds.observe
        self.observe_batch = self.batch_size.observe

    def request(self, outcome: str) -> None:
        """Count one answered webhook request."""
        child = self._by_outcome.get(outcome)
        if child is None:  # an outcome added to the app but not to OUTCOMES still counts
            child = self._by_outcome[outcome] = self.requests.labels(outcome)
        child.inc()

    def memory(self, state: MemoryState) -> None:
        """Record a reading of Redis memory (a few times a second at most)."""
        self.redis_memory.labels("used").set(state.used)
        self.redis_memory.labels("maxmemory").set(state.maxmemory)
        self.redis_memory.labels("high_water").set(state.high_water or 0)
        self.redis_memory.labels("low_water").set(state.low_water or 0)

    def render(self) -> bytes:
        """Return every metric of the registry in Prometheus' text format."""
        return generate_latest(self.registry)

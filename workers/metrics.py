"""The workers' Prometheus metrics, summed over every worker process of a host.

Each ``wabahooks worker`` counts into prometheus-client's multiprocess files in
``PROMETHEUS_MULTIPROC_DIR`` (one file per process and metric type); ``wabahooks metrics``
serves the sum of all of them, plus queue depths read from Redis at scrape time. Without
``PROMETHEUS_MULTIPROC_DIR`` a worker records nothing. See the README's "Metrics".

======================================================  =========  ============================
``wabahooks_events_total``                              counter    by ``kind``, ``outcome``:
                                                                   done, retry,
                                                                   failed_permanent,
                                                                   failed_exhausted
``wabahooks_events_unhandled_total``                    counter    by ``kind``
``wabahooks_handler_runs_total``                        counter    by ``handler``, ``outcome``:
                                                                   ok, stop, retry, permanent,
                                                                   skipped
``wabahooks_handler_seconds``                           histogram  by ``handler``
``wabahooks_portal_requests_total``                     counter    by ``call``, ``status``
                                                                   (HTTP status or ``error``)
``wabahooks_portal_request_seconds``                    histogram  by ``call``
``wabahooks_portal_limiter_wait_seconds``               histogram  waits for the shared limiter
``wabahooks_queue_jobs``                                gauge      by ``queue``, ``state``
                                                                   (scrape time, from Redis)
======================================================  =========  ============================
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from service.keys import RQ_STATE_KEYS
from service.settings import ConfigError

__all__ = [
    "MULTIPROC_ENV",
    "QUEUE_STATES",
    "QueueDepthCollector",
    "WorkerMetrics",
    "multiprocess_dir",
    "process_exited",
    "scrape_registry",
    "serve",
]

#: prometheus-client's variable: the directory every process of a host writes its values to.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: ``state`` label → the RQ key holding a queue's jobs in that state (LLEN or ZCARD).
QUEUE_STATES = RQ_STATE_KEYS

_HANDLER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PORTAL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


def multiprocess_dir(env: Mapping[str, str] | None = None) -> str | None:
    """Return ``PROMETHEUS_MULTIPROC_DIR`` if set (it must be a writable directory), else None.

    Raise :class:`ConfigError` naming the variable when it is set but unusable.
    """
    env = os.environ if env is None else env
    path = env.get(MULTIPROC_ENV, "").strip()
    if not path:
        return None
    if not Path(path).is_dir() or not os.access(path, os.W_OK):
        raise ConfigError(
            f"{MULTIPROC_ENV} names {path!r}, which is not a writable directory: create it "
            "(empty it whenever the host's workers all restart)"
        )
    return path


def process_identifier() -> str:
    """This process's name in the multiprocess directory: host name and PID.

    prometheus-client names each process's files by PID, but workers in containers of
    their own are each PID 1 and, sharing one directory, would write the same files; a
    container's host name is its own. ('-', not '_': the collector splits names on '_'.)
    """
    return f"{socket.gethostname().replace('_', '-')}-{os.getpid()}"


class WorkerMetrics:
    """The worker-side metrics, in ``registry`` (default: a registry of their own).

    In a process started with ``PROMETHEUS_MULTIPROC_DIR`` set, the values go to that
    directory's files (prometheus-client decides when it is imported), whatever registry
    they are defined in; :func:`scrape_registry` reads them back. It is also the portal
    client's :class:`~service.portal.transport.CallObserver`.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if multiprocess_dir() is not None:
            # Before the first metric is made: files named by process_identifier().
            values.ValueClass = values.MultiProcessValue(process_identifier)  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self.events = Counter(
            "wabahooks_events",
            "Job attempts by event kind and how they ended.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.events_unhandled = Counter(
            "wabahooks_events_unhandled",
            "Events no handler matched (acknowledged, logged as event.unhandled).",
            ["kind"],
            registry=self.registry,
        )
        self.handler_runs = Counter(
            "wabahooks_handler_runs",
            "Handler runs by handler and outcome (skipped: done in an earlier attempt).",
            ["handler", "outcome"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "wabahooks_handler_seconds",
            "Seconds a handler ran (whatever its outcome).",
            ["handler"],
            buckets=_HANDLER_BUCKETS,
            registry=self.registry,
        )
        self.portal_requests = Counter(
            "wabahooks_portal_requests",
            "HTTP attempts at portal API calls, by call and HTTP status ('error': no answer).",
            ["call", "status"],
            registry=self.registry,
        )
        self.portal_seconds = Histogram(
            "wabahooks_portal_request_seconds",
            "Seconds one HTTP attempt at a portal API call took.",
            ["call"],
            buckets=_PORTAL_BUCKETS,
            registry=self.registry,
        )
        self.limiter_waits = Histogram(
            "wabahooks_portal_limiter_wait_seconds",
            "Waits the shared rate limiter imposed before a portal request.",
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )

    def event(self, kind: str, outcome: str) -> None:
        """Count one job attempt of an event of ``kind`` that ended with ``outcome``."""
        self.events.labels(kind, outcome).inc()

    def unhandled(self, kind: str) -> None:
        """Count one event that no handler matched."""
        self.events_unhandled.labels(kind).inc()

    def handler(self, handler: str, outcome: str, seconds: float | None = None) -> None:
        """Count one handler run (``seconds`` is None for a skipped one)."""
        self.handler_runs.labels(handler, outcome).inc()
        if seconds is not None:
            self.handler_seconds.labels(handler).observe(seconds)

    def portal_request(self, call: str, status: str, seconds: float) -> None:
        self.portal_requests.labels(call, status).inc()
        self.portal_seconds.labels(call).observe(seconds)

    def limiter_wait(self, seconds: float) -> None:
        self.limiter_waits.observe(seconds)


def process_exited(pid: str | None = None) -> None:
    """Tell the multiprocess directory that this process (or ``pid``, a
    :func:`process_identifier`) is gone.

    Counters and histograms of a finished process keep counting in the sum (its files
    stay); only live-gauge files are removed. Call it as a worker exits.
    """
    path = multiprocess_dir()
    if path is not None:
        # prometheus-client leaves these two unannotated.
        mark_process_dead(process_identifier() if pid is None else pid, path)  # type: ignore[no-untyped-call]


class QueueDepthCollector:
    """Queue depths, read from Redis at each scrape (one pipelined round trip)."""

    def __init__(self, client: redis.Redis, queues: Sequence[str]) -> None:
        self._redis = client
        self._queues = tuple(queues)

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "wabahooks_queue_jobs",
            "Jobs of each queue by state (RQ's queue list and registries).",
            labels=["queue", "state"],
        )
        up = GaugeMetricFamily(
            "wabahooks_queue_redis_up", "1 if Redis answered this scrape's queue depth reads."
        )
        repairs = CounterMetricFamily(
            "wabahooks_chain_repairs",
            "Jobs the workers' sweep released or dropped (operator actions had stranded them) "
            "and RQ compaction leftovers they adopted, by queue.",
            labels=["queue", "kind"],
        )
        with self._redis.pipeline(transaction=False) as pipe:
            for queue in self._queues:
                for state, key_of in QUEUE_STATES.items():
                    key = key_of(queue)
                    if state == "queued":
                        pipe.llen(key)
                    else:
                        pipe.zcard(key)
                pipe.hgetall(f"{queue}:repairs")  # workers.rqstate.RQState.repairs_key
            try:
                counts = iter(pipe.execute())
            except redis.RedisError:
                up.add_metric([], 0)
                return [up]
        for queue in self._queues:
            for state in QUEUE_STATES:
                depth.add_metric([queue, state], float(next(counts)))
            done: Any = next(counts)
            for kind in ("released", "dropped", "adopted"):
                repairs.add_metric([queue, kind], float(done.get(kind.encode(), 0)))
        up.add_metric([], 1)
        return [depth, up, repairs]


def scrape_registry(path: str, client: redis.Redis, queues: Sequence[str]) -> CollectorRegistry:
    """Return a registry that sums every process's values in ``path`` and reads queue depths."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]  # unannotated
    registry.register(QueueDepthCollector(client, queues))
    return registry


def serve(registry: CollectorRegistry, host: str, port: int) -> None:
    """Serve ``registry`` over HTTP (any path) until SIGTERM or SIGINT."""
    server, thread = start_wsgi_server(port, addr=host, registry=registry)
    # A flag, not a threading.Event: Event.set() in a signal handler can deadlock on the
    # Event's own lock, held by the main thread inside wait() when the signal lands.
    stopping = [False]
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.__setitem__(0, True)) for sig in _STOP_SIGNALS
    }
    try:
        while not stopping[0]:
            time.sleep(0.5)  # the signal handler runs between sleeps
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.shutdown()
        server.server_close()
        thread.join(5)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

"""What an operator scrapes at GET /metrics (Prometheus text format, `prometheus_client`).

Each app has its own `CollectorRegistry`, so two apps in one process (the tests) never share or
double-register a metric. Requests are counted when their response starts, by endpoint, adapter
(the served name, or "" before one was resolved) and status; model calls by adapter.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ServeMetrics:
    def __init__(self, queue_depth: Callable[[], int], loaded_adapters: Callable[[], int]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "loraqa_requests", "HTTP requests answered", ["endpoint", "adapter", "status"], registry=r
        )
        self.latency = Histogram(
            "loraqa_request_seconds",
            "time from a request's arrival to its response's start",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram("loraqa_batch_size", "questions per model call", buckets=BATCH_BUCKETS, registry=r)
        self.model_seconds = Counter("loraqa_model_seconds", "seconds spent in model calls", ["adapter"], registry=r)
        self.questions = Counter("loraqa_questions", "questions answered by the model", ["adapter"], registry=r)
        self.generations_stopped = Counter(
            "loraqa_generations_stopped", "streamed generations stopped because the client disconnected", registry=r
        )
        Gauge("loraqa_queue_depth", "questions waiting for the model", registry=r).set_function(queue_depth)
        Gauge("loraqa_adapters_loaded", "adapters this server answers with", registry=r).set_function(loaded_adapters)

    def observe_request(self, endpoint: str, adapter: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, adapter, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, adapters: list[str], seconds: float) -> None:
        """One model call, its questions' adapters (several in a mixed batch: each is charged its share
        of the seconds); called from the worker thread (prometheus_client's metrics are thread-safe)."""
        self.batch_size.observe(len(adapters))
        for adapter in sorted(set(adapters)):
            count = adapters.count(adapter)
            self.model_seconds.labels(adapter).inc(seconds * count / len(adapters))
            self.questions.labels(adapter).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)

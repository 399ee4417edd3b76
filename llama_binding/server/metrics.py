"""Prometheus metrics with llama-server's names (existing dashboards work), plus the
latency histograms users ask llama-server for.

One :class:`ServerMetrics` per app, on its own registry (no process-global state): the
engine's counters are read when /metrics is scraped (:meth:`AsyncLlama.stats`), the
per-request histograms are fed by :attr:`AsyncLlama.observers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Optional

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..aio import AsyncLlama, RequestTiming

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class _EngineCollector(Collector):
    """llama-server's ``llamacpp:*`` metrics from the engine's counters."""

    def __init__(self, llm: Callable[[], Optional[AsyncLlama]]) -> None:
        self._llm = llm

    def collect(self) -> Iterator[Metric]:
        llm = self._llm()
        if llm is None or llm.closed:
            return
        s = llm.stats()
        decode = max(s.decode_seconds, 1e-9)
        yield CounterMetricFamily("llamacpp:prompt_tokens", "Number of prompt tokens processed.",
                                  value=s.prompt_tokens)
        yield CounterMetricFamily("llamacpp:tokens_predicted", "Number of generation tokens processed.",
                                  value=s.generated_tokens)
        yield CounterMetricFamily("llamacpp:n_decode", "Total number of llama_decode() calls.",
                                  value=s.decodes)
        yield GaugeMetricFamily("llamacpp:prompt_tokens_seconds", "Average prompt throughput in tokens/s.",
                                value=s.prompt_tokens / decode)
        yield GaugeMetricFamily("llamacpp:predicted_tokens_seconds",
                                "Average generation throughput in tokens/s.",
                                value=s.generated_tokens / decode)
        yield GaugeMetricFamily("llamacpp:requests_processing", "Number of requests processing.",
                                value=s.active)
        yield GaugeMetricFamily("llamacpp:requests_deferred", "Number of requests deferred.", value=s.waiting)
        yield GaugeMetricFamily("llamacpp:n_busy_slots_per_decode",
                                "Average number of busy slots per decode.",
                                value=s.busy_slot_steps / max(s.decodes, 1))
        yield GaugeMetricFamily("llama_binding_kv_cache_usage_ratio", "Share of the KV cache's cells in use.",
                                value=s.kv_tokens / max(s.n_ctx, 1))
        yield GaugeMetricFamily("llama_binding_slots", "Sequence slots of the engine.", value=s.n_slots)


class ServerMetrics:
    """The registry of one app: engine counters and request latency histograms."""

    def __init__(self, llm: Callable[[], Optional[AsyncLlama]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(llm))
        self.ttft = Histogram("llama_binding_time_to_first_token_seconds", "Time to the first token.",
                              buckets=_LATENCY, registry=self.registry)
        self.inter_token = Histogram("llama_binding_inter_token_latency_seconds",
                                     "Mean time between a request's tokens after the first.",
                                     buckets=_TOKEN_GAP, registry=self.registry)
        self.duration = Histogram("llama_binding_request_duration_seconds", "End-to-end time of a request.",
                                  buckets=_LATENCY, registry=self.registry)
        self.queue_wait = Histogram("llama_binding_queue_wait_seconds", "Time a request waited for a slot.",
                                    buckets=_LATENCY, registry=self.registry)

    def observe(self, t: RequestTiming) -> None:
        """An :attr:`AsyncLlama.observers` callback."""
        self.ttft.observe(t.time_to_first_token)
        self.duration.observe(t.duration)
        self.queue_wait.observe(t.queue_wait)
        if t.tokens > 1:
            self.inter_token.observe((t.duration - t.time_to_first_token) / (t.tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)

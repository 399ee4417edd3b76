"""Prometheus metrics with llama-server's names (existing dashboards work), plus the
latency histograms users ask llama-server for.

One :class:`ServerMetrics` per app, on its own registry (no process-global state): each
loaded engine's counters are read when /metrics is scraped (:meth:`AsyncLlama.stats`), the
per-request histograms are fed by :attr:`AsyncLlama.observers`; every series has a
``model`` label (the model's alias).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..aio import RequestTiming
from .pool import ModelPool

__all__ = ["CONTENT_TYPE", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_TOKEN_GAP = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class _EngineCollector(Collector):
    """llama-server's ``llamacpp:*`` metrics from the counters of each loaded engine (a
    ``model`` label), and the pool's load/unload counts."""

    def __init__(self, pool: ModelPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        def family(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str,
                   doc: str) -> GaugeMetricFamily | CounterMetricFamily:
            return kind(name, doc, labels=["model"])

        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        families = {
            "prompt": family(counter, "llamacpp:prompt_tokens", "Number of prompt tokens processed."),
            "predicted": family(counter, "llamacpp:tokens_predicted",
                                "Number of generation tokens processed."),
            "decodes": family(counter, "llamacpp:n_decode", "Total number of llama_decode() calls."),
            "prompt_rate": family(gauge, "llamacpp:prompt_tokens_seconds",
                                  "Average prompt throughput in tokens/s."),
            "predicted_rate": family(gauge, "llamacpp:predicted_tokens_seconds",
                                     "Average generation throughput in tokens/s."),
            "processing": family(gauge, "llamacpp:requests_processing", "Number of requests processing."),
            "deferred": family(gauge, "llamacpp:requests_deferred", "Number of requests deferred."),
            "busy": family(gauge, "llamacpp:n_busy_slots_per_decode",
                           "Average number of busy slots per decode."),
            "kv": family(gauge, "llama_binding_kv_cache_usage_ratio",
                         "Share of the KV cache's cells in use."),
            "slots": family(gauge, "llama_binding_slots", "Sequence slots of the engine."),
            "drafted": family(counter, "llamacpp:n_drafted", "Speculative decoding: tokens drafted."),
            "accepted": family(counter, "llamacpp:n_drafted_accepted",
                               "Speculative decoding: drafted tokens accepted."),
            "pipelined": family(counter, "llama_binding_pipelined_decodes",
                                "Decodes queued before the last step's per-request bookkeeping "
                                "(a GPU's busy steady steps)."),
        }
        phases = CounterMetricFamily("llama_binding_engine_seconds",
                                     "The engine thread's time by phase: prepare (batches, admission), "
                                     "decode (llama_decode and the wait for it), collect (sampling).",
                                     labels=["model", "phase"])
        loaded = family(gauge, "llama_binding_model_loaded", "1 while the model is loaded.")
        loads = family(counter, "llama_binding_model_loads", "Times the model was loaded.")
        unloads = family(counter, "llama_binding_model_unloads", "Times the model was unloaded.")
        load_s = family(gauge, "llama_binding_model_load_seconds", "Seconds the last load took.")
        for entry in self._pool.entries:
            name = [entry.alias]
            loaded.add_metric(name, 1.0 if entry.loaded is not None else 0.0)
            loads.add_metric(name, entry.loads)
            unloads.add_metric(name, entry.unloads)
            if entry.load_seconds is not None:
                load_s.add_metric(name, entry.load_seconds)
            llm = entry.loaded.llm if entry.loaded is not None else None
            if llm is None or llm.closed:
                continue
            s = llm.stats()
            decode = max(s.decode_seconds, 1e-9)
            for key, value in (("prompt", s.prompt_tokens), ("predicted", s.generated_tokens),
                               ("decodes", s.decodes), ("prompt_rate", s.prompt_tokens / decode),
                               ("predicted_rate", s.generated_tokens / decode), ("processing", s.active),
                               ("deferred", s.waiting), ("busy", s.busy_slot_steps / max(s.decodes, 1)),
                               ("kv", s.kv_tokens / max(s.n_ctx, 1)), ("slots", s.n_slots),
                               ("drafted", s.drafted_tokens), ("accepted", s.accepted_tokens),
                               ("pipelined", s.pipelined_decodes)):
                families[key].add_metric(name, value)
            for phase, seconds in (("prepare", s.prepare_seconds), ("decode", s.decode_seconds),
                                   ("collect", s.collect_seconds), ("deliver", s.deliver_seconds),
                                   ("idle", s.idle_seconds)):
                phases.add_metric([entry.alias, phase], seconds)
        yield from families.values()
        yield phases
        yield from (loaded, loads, unloads, load_s)


class ServerMetrics:
    """The registry of one app: engine counters and request latency histograms, per model."""

    def __init__(self, pool: ModelPool) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(pool))
        labels = ["model"]
        self.ttft = Histogram("llama_binding_time_to_first_token_seconds", "Time to the first token.",
                              labels, buckets=_LATENCY, registry=self.registry)
        self.inter_token = Histogram("llama_binding_inter_token_latency_seconds",
                                     "Mean time between a request's tokens after the first.",
                                     labels, buckets=_TOKEN_GAP, registry=self.registry)
        self.duration = Histogram("llama_binding_request_duration_seconds", "End-to-end time of a request.",
                                  labels, buckets=_LATENCY, registry=self.registry)
        self.queue_wait = Histogram("llama_binding_queue_wait_seconds", "Time a request waited for a slot.",
                                    labels, buckets=_LATENCY, registry=self.registry)

    def observer(self, model: str) -> Callable[[RequestTiming], None]:
        """An :attr:`AsyncLlama.observers` callback for ``model``'s engine."""
        ttft, duration = self.ttft.labels(model), self.duration.labels(model)
        queue_wait, inter_token = self.queue_wait.labels(model), self.inter_token.labels(model)

        def observe(t: RequestTiming) -> None:
            ttft.observe(t.time_to_first_token)
            duration.observe(t.duration)
            queue_wait.observe(t.queue_wait)
            if t.tokens > 1:
                inter_token.observe((t.duration - t.time_to_first_token) / (t.tokens - 1))

        return observe

    def render(self) -> bytes:
        return generate_latest(self.registry)

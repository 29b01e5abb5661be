"""Prometheus metrics of the HTTP API, in a registry owned by each app (no process-global state).

Exposed at ``GET /metrics``:

* ``sam3_http_requests_total{method, route, status}`` and ``sam3_http_request_duration_seconds{method,
  route}`` (histogram) for every request; ``route`` is the route template (``/v1/chat/{conversation_id}``),
  so label sets stay bounded; ``sam3_http_requests_in_flight``;
* ``sam3_agent_queries_total{status}``: agent queries by outcome;
* read from the engine at scrape time: ``sam3_engine_queue_depth``, ``sam3_engine_cache_hits_total``,
  ``..._cache_misses_total``, ``..._cache_evictions_total``, ``sam3_engine_cache_entries``,
  ``sam3_engine_cache_bytes``, ``sam3_engine_images_encoded_total``, ``sam3_engine_detector_passes_total``,
  ``sam3_engine_prompts_total``, ``sam3_engine_refines_total`` and ``sam3_engine_ready``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Seconds; covers a cached tiny-model call (ms) up to a long agent run (minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class EngineCollector(Collector):
    """Reads queue depth, cache and work counters from the engine when Prometheus scrapes."""

    def __init__(self, get_engine: Callable[[], Any]) -> None:
        self._get_engine = get_engine

    def collect(self) -> Iterator[Metric]:
        engine = self._get_engine()
        yield GaugeMetricFamily("sam3_engine_ready", "1 once the SAM 3 model is loaded", value=int(engine is not None))
        if engine is None:
            return
        yield GaugeMetricFamily("sam3_engine_queue_depth", "requests waiting for the engine worker",
                                value=engine.queue_depth())
        cache = engine.cache_stats()
        for name, value, text in (("cache_hits", cache.hits, "image encodings served from the cache"),
                                  ("cache_misses", cache.misses, "images that had to be encoded"),
                                  ("cache_evictions", cache.evictions, "encodings evicted from the cache")):
            yield CounterMetricFamily(f"sam3_engine_{name}", text, value=value)
        yield GaugeMetricFamily("sam3_engine_cache_entries", "images in the encoding cache", value=cache.entries)
        yield GaugeMetricFamily("sam3_engine_cache_bytes", "bytes held by the encoding cache", value=cache.bytes)
        counters = engine.counters()
        for name in ("images_encoded", "detector_passes", "prompts", "refines"):
            yield CounterMetricFamily(f"sam3_engine_{name}", f"engine work: {name.replace('_', ' ')}",
                                      value=getattr(counters, name))


class Metrics:
    """The registry and instruments of one app."""

    def __init__(self, get_engine: Callable[[], Any]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("sam3_http_requests", "HTTP requests served", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("sam3_http_request_duration_seconds", "time to the end of the response",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge("sam3_http_requests_in_flight", "requests being served", registry=self.registry)
        self.agent_queries = Counter("sam3_agent_queries", "agent queries by outcome", ["status"],
                                     registry=self.registry)
        self.registry.register(EngineCollector(get_engine))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: Methods counted under their own name; any other (clients may send any token) is counted as ``OTHER``.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _route_of(scope: Scope) -> str:
    """The matched route's template; every path no route matched shares the label ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


def _method_of(scope: Scope) -> str:
    method = str(scope.get("method", ""))
    return method if method in KNOWN_METHODS else "OTHER"


def _status_of(status: int) -> str:
    """The status as a label: standard codes as they are, anything else as ``other`` (bounded)."""
    return str(status) if 100 <= status <= 599 else "other"


class MetricsMiddleware:
    """Pure ASGI middleware counting requests and timing them until the last body byte is sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route, method = _route_of(scope), _method_of(scope)
            self.metrics.requests.labels(method, route, _status_of(status[0])).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)

"""Prometheus metrics of an edge run: frames/s, per-frame latency, dropped frames, events by type,
sink errors.

Each pipeline owns its registry (so tests and several runs in one process do not collide); `serve(port)`
exposes it on `/metrics` with prometheus-client's own HTTP server.

Example::

    >>> m = EdgeMetrics()
    >>> m.events.labels(camera="door", type="personLineEvent").inc()
    >>> m.value("veil_edge_events_total", camera="door", type="personLineEvent")
    1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("veil_edge_frames", "Frames processed", ["camera"], registry=r)
        self.fps = Gauge("veil_edge_frames_per_second", "Processing rate over the last second", ["camera"], registry=r)
        self.latency = Histogram(
            "veil_edge_frame_latency_seconds",
            "Time from a frame's arrival to its events being handed to the sinks",
            ["camera"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dropped_frames = Counter(
            "veil_edge_dropped_frames",
            "Frames lost: undecodable, or skipped to keep up in realtime",
            ["camera"],
            registry=r,
        )
        self.reconnects = Counter("veil_edge_stream_reconnects", "Live source reconnects", ["camera"], registry=r)
        self.events = Counter("veil_edge_events", "Events produced", ["camera", "type"], registry=r)
        self.sink_errors = Counter("veil_edge_sink_errors", "Failed deliveries (before retry)", ["sink"], registry=r)
        self.sink_dropped = Counter(
            "veil_edge_sink_dropped_events",
            "Events dropped by a sink (queue/buffer full or retries exhausted)",
            ["sink"],
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (a counter's `_total`), 0.0 when it was never touched."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0

"""Prometheus metrics of one reactor process, served over HTTP when asked for."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from reactor.errors import BadInput

OUTCOMES = ("delivered", "target_missing", "failed", "deferred", "target_changed")
# Outcomes of a delivery that typed nothing: no typing latency to observe.
_UNTYPED = ("deferred", "target_changed")
# Typing takes a few milliseconds; a pane that never shows the text takes seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The reactor's counters and gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.prompts = Counter("ps_health_reactor_prompts", "Prompts delivered or attempted, by outcome",
                               ["outcome"], registry=self.registry)
        for outcome in OUTCOMES:
            self.prompts.labels(outcome)
        self.latency = Histogram("ps_health_reactor_delivery_latency_seconds",
                                 "Time from starting a delivery until the text was typed into the pane",
                                 buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.listener = Gauge("ps_health_reactor_listener_connected",
                              "1 while the LISTEN connection is up, else 0", registry=self.registry)
        self.held = Gauge("ps_health_reactor_prompts_held",
                          "Prompts claimed by this reactor and not yet recorded as done", registry=self.registry)
        self.sweep_age = Gauge("ps_health_last_sweep_age_seconds",
                               "Seconds since the last run_checks sweep started (system_health)",
                               registry=self.registry)
        self.sweep_age.set(math.nan)

    def delivery(self, outcome: str, latency_ms: float) -> None:
        """Count one delivery and its latency."""
        self.prompts.labels(outcome).inc()
        if outcome not in _UNTYPED:
            self.latency.observe(max(latency_ms, 0.0) / 1000.0)

    def health(self, health: dict) -> None:
        """Take the figures of one system_health() answer."""
        age = health.get("sweep_age_seconds")
        self.sweep_age.set(math.nan if age is None else float(age))

    def serve(self, port: int, addr: str) -> None:
        """Serve /metrics on addr:port from a background thread; a port in use is bad input."""
        try:
            start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:  # in use, not permitted, or an address not on this host
            raise BadInput(f"--metrics-port {port}: cannot serve metrics on {addr}:{port}: "
                           f"{exc.strerror or exc}") from None

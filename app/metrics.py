"""Prometheus collectors. One registry per app so tests (and several apps in
one process) do not collide; under gunicorn, PROMETHEUS_MULTIPROC_DIR switches
prometheus_client to its multiprocess mode and /metrics aggregates workers."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from app.instances import METRIC_LABELS


class Metrics:
    def __init__(self, instance_labels: tuple[str, ...] = ()) -> None:
        """`instance_labels`: the extra metric label names the provider instances declare
        (app/instances.py), every instance counted with all of them ("" where it has none)."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "interchange_requests_total", "Client requests by frontend, backend, routing reason and status.",
            ["frontend", "backend", "reason", "status"], registry=self.registry)
        self.latency = Histogram(
            "interchange_request_seconds",
            "Time to the reply's headers (whole reply when not streamed), by frontend and backend.",
            ["frontend", "backend"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.upstream_errors = Counter(
            "interchange_upstream_errors_total", "Upstream failures by backend and error kind.",
            ["backend", "kind"], registry=self.registry)
        self.tokens = Counter(
            "interchange_tokens_total", "Tokens reported by backends (input / output).",
            ["backend", "direction"], registry=self.registry)
        # The dual-mode gateway seed's per-instance counter, under the name it gives.
        self.instance_label_names = ("method", "status", *METRIC_LABELS,
                                     *sorted(set(instance_labels) - set(METRIC_LABELS)))
        self.instance_requests = Counter(
            "http_requests_total", "Requests served by provider instances (transparent and protocol mode), "
            "by method, status and the instance's labels.", self.instance_label_names, registry=self.registry)
        self._children: dict = {}

    def child(self, metric, *labels: str):
        """`metric.labels(*labels)`, looked up once per label set (the label
        values are few: frontends x backends x reasons x statuses)."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def count_instance(self, instance, method: str, status: int) -> None:
        """One request served by `instance` (an app.instances.InstanceConfig), unless its
        metrics are disabled."""
        if not instance.metrics_enabled:
            return
        labels = instance.metric_labels()
        values = (method, str(status), *(labels.get(name, "") for name in self.instance_label_names[2:]))
        self.child(self.instance_requests, *values).inc()

    def render(self) -> tuple[bytes, str]:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count_usage(self, backend: str, input_tokens: int, output_tokens: int) -> None:
        if input_tokens:
            self.child(self.tokens, backend, "input").inc(input_tokens)
        if output_tokens:
            self.child(self.tokens, backend, "output").inc(output_tokens)

"""A server's Prometheus metrics, labelled by stream and bundle; the per-stream source and
queue figures are read from the streams when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# the server's streams (``edgead.serve.stream.Stream``), read when Prometheus scrapes; typed
# loosely so that this module, which the stream imports, does not import the stream
Streams = Callable[[], Iterable[Any]]


class _StreamCollector:
    """Source and queue figures per stream, read from their owners when Prometheus scrapes:
    nothing is mirrored into counters on the per-frame path."""

    def __init__(self, streams: Streams):
        self.streams = streams

    def collect(self):
        labels = ["stream", "bundle"]
        dropped = CounterMetricFamily(
            "edgead_dropped_frames", "Frames dropped because inference was behind", labels=labels
        )
        reconnects = CounterMetricFamily("edgead_reconnects", "Source reconnections", labels=labels)
        up = GaugeMetricFamily(
            "edgead_source_up", "1 when the source delivers frames", labels=labels
        )
        fps = GaugeMetricFamily("edgead_fps", "Frames scored per second (rolling)", labels=labels)
        drift = {
            "alarm": GaugeMetricFamily(
                "edgead_drift_alarm",
                "1 while the drift alarm is up (the promise broken or about to be)",
                labels=labels,
            ),
            "notice": GaugeMetricFamily(
                "edgead_drift_notice",
                "1 while the scores moved but the promise holds (recalibrate when you can)",
                labels=labels,
            ),
            "psi": GaugeMetricFamily(
                "edgead_drift_psi", "Population stability index of the scores", labels=labels
            ),
            "flag_rate": GaugeMetricFamily(
                "edgead_drift_flag_rate", "Share of the window's parts flagged", labels=labels
            ),
            "target_frr": GaugeMetricFamily(
                "edgead_promised_false_reject_rate", "The bundle's target rate", labels=labels
            ),
            "median_shift": GaugeMetricFamily(
                "edgead_drift_median_shift",
                "Median score shift, as a fraction of the way to the threshold",
                labels=labels,
            ),
        }
        live = {
            "confirmed_good": GaugeMetricFamily(
                "edgead_confirmed_good", "Frames an operator confirmed good", labels=labels
            ),
            "confirmed_defective": GaugeMetricFamily(
                "edgead_confirmed_defective", "Frames confirmed defective", labels=labels
            ),
            "live_false_reject_rate": GaugeMetricFamily(
                "edgead_live_false_reject_rate",
                "Confirmed good frames the verdict rejected, as a share",
                labels=labels,
            ),
            "live_detection_rate": GaugeMetricFamily(
                "edgead_live_detection_rate",
                "Confirmed defective frames the verdict caught, as a share",
                labels=labels,
            ),
        }
        sink_labels = ["stream", "bundle", "sink", "type"]
        sinks = {
            "sent": CounterMetricFamily(
                "edgead_sink_sent", "Verdicts the receiver acknowledged", labels=sink_labels
            ),
            "dropped": CounterMetricFamily(
                "edgead_sink_dropped",
                "Verdicts lost: spool full (the oldest go) or a disk error",
                labels=sink_labels,
            ),
            "rejected": CounterMetricFamily(
                "edgead_sink_rejected", "Verdicts the receiver refused for good", labels=sink_labels
            ),
            "spooled": GaugeMetricFamily(
                "edgead_sink_spooled", "Verdicts waiting on disk for delivery", labels=sink_labels
            ),
            "connected": GaugeMetricFamily(
                "edgead_sink_connected", "1 while the receiver takes verdicts", labels=sink_labels
            ),
        }
        for stream in self.streams():
            key = [stream.name, stream.runner.name]
            for sink in stream.sinks:
                s = sink.stats()
                skey = [*key, s["name"], s["type"]]
                for name in ("sent", "dropped", "rejected", "spooled"):
                    sinks[name].add_metric(skey, s[name])
                sinks["connected"].add_metric(skey, 1.0 if s["state"] == "connected" else 0.0)
            status = stream.capture.snapshot()
            dropped.add_metric(key, stream.queue.dropped)
            reconnects.add_metric(key, status["reconnects"])
            up.add_metric(key, 1.0 if status["state"] == "live" else 0.0)
            fps.add_metric(key, stream.fps())
            d = stream.drift.status()
            if d.state in ("ok", "shift", "drift"):
                drift["alarm"].add_metric(key, 1.0 if d.state == "drift" else 0.0)
                drift["notice"].add_metric(key, 1.0 if d.state == "shift" else 0.0)
                for name in ("psi", "flag_rate", "target_frr", "median_shift"):
                    drift[name].add_metric(key, getattr(d, name))
            rates = stream.feedback.rates()
            for name, family in live.items():
                if rates[name] is not None:
                    family.add_metric(key, rates[name])
        return [dropped, reconnects, up, fps, *drift.values(), *live.values(), *sinks.values()]


class Metrics:
    """Prometheus metrics, labelled by stream and bundle, in a registry of their own (one per
    service; tests run several)."""

    def __init__(self, streams: Streams) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        sb = ["stream", "bundle"]
        self.frames = Counter("edgead_frames", "Frames scored", sb, registry=r)
        self.anomalies = Counter("edgead_anomalies", "Frames judged anomalous", sb, registry=r)
        self.frame_errors = Counter(
            "edgead_frame_errors",
            "Frames or uploads that could not be used",
            ["stream", "origin"],
            registry=r,
        )
        self.uploads = Counter("edgead_uploads", "Images scored through the API", sb, registry=r)
        self.events_lost = Counter(
            "edgead_events_not_saved", "Anomalous frames not written to disk", sb, registry=r
        )
        self.score = Gauge(
            "edgead_last_score", "Raw image score of the latest frame", sb, registry=r
        )
        r.register(_StreamCollector(streams))
        self.stage = Histogram(
            "edgead_stage_seconds",
            "Per-stage latency of one frame (a batch's stage time shared by its frames)",
            ["stream", "bundle", "stage"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=r,
        )
        self.batch = Histogram(
            "edgead_batch_frames",
            "Frames per batch the backend scored",
            ["bundle"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )

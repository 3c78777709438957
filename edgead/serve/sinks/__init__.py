"""Verdicts into the line's systems: MQTT, OPC UA and HTTP webhooks.

Each sink of a stream has a bounded in-memory queue, a spool on disk and two threads:

- ``offer`` (on the scoring thread) only puts the message in the memory queue and never
  waits: a full queue (a disk that stopped) drops the message and counts it;
- the spooler thread appends what arrives to the spool (:mod:`edgead.serve.spool`), in order;
- the sender thread delivers the spool's oldest messages, in order, and deletes each once the
  receiver acknowledged it (MQTT PUBACK at QoS 1, an HTTP 2xx, an OPC UA Good status). When
  the receiver is down it retries with a capped exponential backoff while the spool fills.

So a broker that is down, or a webhook that hangs, costs scoring nothing; what was not yet
delivered survives a restart (and a SIGKILL) and goes out first, in order, on the next start.
Delivery is *at least once*: a message acknowledged just before a crash, or whose
acknowledgement was lost, is sent again; each message's ``frame_id`` is unique (stream, server
start, frame number), so the receiver can drop the repeat.

The message is the JSON object of :func:`line_message` (schema: ``docs/line-message.schema.json``).
"""

from edgead.serve.sinks.base import SCHEMA, Sink, line_message, send_verdict
from edgead.serve.sinks.build import SinkSpec, flag_sinks, read_secret, sink_specs
from edgead.serve.sinks.mqtt import MqttSink
from edgead.serve.sinks.opcua import OpcUaSink
from edgead.serve.sinks.webhook import WebhookSink

__all__ = [
    "SCHEMA",
    "MqttSink",
    "OpcUaSink",
    "Sink",
    "SinkSpec",
    "WebhookSink",
    "flag_sinks",
    "line_message",
    "read_secret",
    "send_verdict",
    "sink_specs",
]

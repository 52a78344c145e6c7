"""Transport: publish record batches, consume them in groups, commit (in-process or Kafka).

See :mod:`parkwatch.transport.base` for the interface, ``docs/TRANSPORT.md`` for the design.
"""

# The implementations ("memory", "kafka") register when open_transport first runs, so
# importing the settings models does not import the Kafka client.
from parkwatch.transport.base import (
    SCHEMAS,
    TOPICS,
    TRANSPORTS,
    Consumer,
    Message,
    Topics,
    Transport,
    TransportSettings,
    decode_message,
    key_for,
    open_transport,
    publish_flows,
    publish_records,
    record_id,
)

__all__ = [
    "SCHEMAS",
    "TOPICS",
    "TRANSPORTS",
    "Consumer",
    "Message",
    "Topics",
    "Transport",
    "TransportSettings",
    "decode_message",
    "key_for",
    "open_transport",
    "publish_flows",
    "publish_records",
    "record_id",
]

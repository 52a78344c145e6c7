"""The at-least-once stage loop that ``parkwatch detect`` / ``correlate`` run on.

Each round: ``poll`` a batch from the input topics (in consumer group ``group``), decode each
message by its ``schema`` header into a record (:data:`parkwatch.schema.RECORD_TYPES`), drop
duplicates by (schema, record id), hand the rest to ``process``, publish what it returns
(``(topic, record)`` pairs), ``flush`` (acks=all: the output is durable) and only then
``commit`` the input offsets. A crash anywhere before the commit means the batch is
delivered again — to this member after a restart or to another after a rebalance — so
nothing is lost; the outputs of a replayed batch carry the same ids (stages derive ids from
their input), and the next stage drops them as duplicates.

Duplicates are recognised within one process (a bounded set of recent ids, two
generations of ``dedup_size // 2``): redeliveries after a rebalance or a spool resend reach
the same process or the next stage's set. Undecodable messages are counted and reported as
``undecodable_record`` weirds (layer ``transport``) on ``weird_topic``, never a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from parkwatch.errors import TransportError
from parkwatch.schema import Record, SchemaError, Weird
from parkwatch.transport.base import (
    TOPICS,
    Transport,
    decode_message,
    publish_records,
    record_id,
)

log = logging.getLogger(__name__)

Process = Callable[[list[Record]], list[tuple[str, Record]]]


class Dedup:
    """Recently seen ids, bounded: two generations of ``size // 2`` each."""

    def __init__(self, size: int = 1_000_000) -> None:
        self.half = max(1, size // 2)
        self.new: set[tuple[str, str]] = set()
        self.old: set[tuple[str, str]] = set()

    def seen(self, key: tuple[str, str]) -> bool:
        """True if ``key`` was seen before; remember it either way."""
        if key in self.new:
            return True
        hit = key in self.old
        self.new.add(key)
        if len(self.new) >= self.half:
            self.old, self.new = self.new, set()
        return hit


@dataclass
class StageStats:
    """Counters of one :func:`run_stage` run."""

    batches: int = 0
    messages: int = 0
    records: int = 0  # decoded and new: handed to process
    duplicates: int = 0
    undecodable: int = 0
    published: int = 0
    commits: int = 0
    by_schema: dict[str, int] = field(default_factory=dict)


def run_stage(
    transport: Transport,
    in_topics: Sequence[str],
    group: str,
    process: Process,
    *,
    stop: threading.Event | None = None,
    max_records: int = 500,
    poll_timeout: float = 0.5,
    idle_exit: float | None = None,
    max_batches: int | None = None,
    dedup: Dedup | None = None,
    weird_topic: str | None = TOPICS.events,
    flush_timeout: float | None = None,
    on_batch: Callable[[StageStats], None] | None = None,
    idle_when: Callable[[], bool] | None = None,
) -> StageStats:
    """Run a stage until ``stop`` is set, ``idle_exit`` seconds pass with no message, or
    ``max_batches`` batches were committed; return its counters. With ``idle_when``, idle
    time counts only while it returns True (a stage fed by another that is still running).

    ``process`` gets the batch's new records (in poll order) and returns the records to
    publish with their topics. A :class:`TransportError` while publishing, flushing or
    polling ends the run without committing the batch (its records come again).
    """
    st = StageStats()
    dedup = dedup or Dedup()
    consumer = transport.subscribe(in_topics, group)
    last = time.monotonic()
    try:
        while not (stop is not None and stop.is_set()):
            if max_batches is not None and st.batches >= max_batches:
                break
            msgs = consumer.poll(poll_timeout, max_records)
            if not msgs:
                if idle_when is not None and not idle_when():
                    last = time.monotonic()
                elif idle_exit is not None and time.monotonic() - last >= idle_exit:
                    break
                continue
            last = time.monotonic()
            st.messages += len(msgs)
            records: list[Record] = []
            weirds: list[tuple[str, Record]] = []
            for m in msgs:
                try:
                    rec = decode_message(m)
                except SchemaError as exc:
                    st.undecodable += 1
                    if weird_topic is not None:
                        weirds.append((weird_topic, _undecodable(m, exc)))
                    continue
                sid = rec.schema_id()
                if dedup.seen((sid, record_id(rec))):
                    st.duplicates += 1
                    continue
                st.by_schema[sid] = st.by_schema.get(sid, 0) + 1
                records.append(rec)
            st.records += len(records)
            outputs = process(records) if records else []
            st.published += publish_records(transport, [*outputs, *weirds])
            transport.flush(flush_timeout)  # durable before the input is committed
            consumer.commit()
            st.commits += 1
            st.batches += 1
            if on_batch is not None:
                on_batch(st)
    except TransportError:
        log.exception("stage %s stopped: the uncommitted batch will be delivered again", group)
        raise
    finally:
        consumer.close()
    return st


def _undecodable(m: object, exc: Exception) -> Weird:
    topic, part, off = (getattr(m, k, None) for k in ("topic", "partition", "offset"))
    return Weird(
        time.time_ns(),
        "undecodable_record",
        "transport",
        f"{topic}[{part}]@{off}: {exc}",
        str(topic),
        None,
        None,
    )

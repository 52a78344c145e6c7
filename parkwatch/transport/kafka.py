"""Kafka transport (kafka-python, public client APIs only).

Producer: ``acks=all``, batching (``linger_ms``, ``batch_size``), compression (lz4 when the
``lz4`` package is installed, else gzip: kafka-python needs no extra package for gzip),
idempotence off (an idempotent kafka-python producer fails for good once the broker forgets
its producer id, e.g. after a restart of an in-memory broker). Topics are created (when
missing) before the first publish to them, and again after a failure.

Partitions are chosen here, ``crc32c(key) % partitions`` (C speed; the murmur2 of the Java
client costs 4 µs a key in Python); records without a key go round robin.

Packing: kafka-python spends ~20 µs per ``send``, so with ``pack > 0`` (the default) up to
``pack`` records of one partition travel as one Kafka message: their JSON lines joined by
``\\n``, header ``parkwatch-pack: jsonl``. The consumer unpacks them into one
:class:`Message` each (same offset; ``key`` None — :func:`key_for` recomputes it). Values
that contain a newline are always sent alone. ``pack=0`` sends one Kafka message per record,
keyed, for consumers outside ParkWatch.

Consumers join a group with manual commit; ``commit`` commits the offsets after the last
message ``poll`` returned of each partition still assigned. A failed commit is counted and
retried with the next one (offsets are cumulative); revoked partitions are forgotten.
"""

from __future__ import annotations

import contextlib
import logging
import math
import zlib
from collections.abc import Sequence
from typing import Any

import crc32c

from parkwatch.errors import TransportError
from parkwatch.transport.base import TRANSPORTS, Message, TransportSettings

log = logging.getLogger(__name__)
PACK_HEADER = "parkwatch-pack"


def compression_type(name: str, packed: bool = False) -> str | None:
    """The kafka-python codec for a ``compression`` setting (None when packed messages are
    deflated by ParkWatch itself: see :func:`envelope_codec`)."""
    from kafka.codec import has_lz4

    if name == "none":
        return None
    if name == "lz4" or (name == "auto" and has_lz4()):
        if not has_lz4():
            raise TransportError("lz4 compression needs the lz4 package", hint="pip install lz4")
        return "lz4"
    return None if packed else "gzip"


def envelope_codec(name: str) -> bytes:
    """Pack header value: ``jsonl+zlib`` where kafka-python would gzip at level 9 (~30 MB/s;
    zlib level 1 deflates ~10x faster), plain ``jsonl`` with lz4 or no compression."""
    return b"jsonl" if name == "none" or compression_type(name) == "lz4" else b"jsonl+zlib"


def parse_url(url: str) -> list[str]:
    """``kafka://h1:p1,h2:p2`` -> ``["h1:p1", "h2:p2"]``."""
    rest = url.partition("://")[2].strip("/")
    hosts = [h.strip() for h in rest.split(",") if h.strip()]
    if not hosts:
        raise TransportError(f"no broker in {url!r}", hint="use kafka://HOST:PORT[,HOST:PORT]")
    return [h if ":" in h else f"{h}:9092" for h in hosts]


class KafkaTransport:
    """:class:`~parkwatch.transport.base.Transport` on Kafka."""

    def __init__(self, bootstrap: Sequence[str], settings: TransportSettings | None = None):
        self.bootstrap = list(bootstrap)
        self.settings = settings or TransportSettings()
        self._producer: Any = None
        self._futures: list[Any] = []
        self._partitions: dict[str, int] = {}
        self._rr = 0
        self.sent_messages = 0

    # -- producer -------------------------------------------------------------------------
    def _kafka_error(self, what: str, exc: Exception) -> TransportError:
        self._reset()
        return TransportError(f"{what} ({', '.join(self.bootstrap)}): {exc!r}")

    def _get_producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            s = self.settings
            try:
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    client_id="parkwatch",
                    acks="all",
                    enable_idempotence=False,
                    linger_ms=s.linger_ms,
                    batch_size=s.batch_size,
                    compression_type=compression_type(s.compression, packed=s.pack > 0),
                    max_request_size=max(4 << 20, 2 * s.pack_bytes),
                    request_timeout_ms=s.request_timeout_ms,
                    delivery_timeout_ms=s.request_timeout_ms + s.linger_ms + 1000,
                    max_block_ms=s.max_block_ms,
                    bootstrap_timeout_ms=s.max_block_ms,
                    reconnect_backoff_max_ms=1000,
                )
            except (KafkaError, OSError) as exc:
                raise self._kafka_error("cannot connect to Kafka", exc) from exc
        return self._producer

    def _reset(self) -> None:
        """Drop the producer after a failure (its records are the caller's to resend)."""
        producer, self._producer = self._producer, None
        self._futures = []
        self._partitions = {}
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:  # a producer being abandoned may fail to close
                log.debug("closing failed producer: %r", exc)

    def ensure_topics(self, topics: Sequence[str], partitions: int | None = None) -> None:
        """Create the topics that do not exist yet (``partitions`` each)."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        n = partitions or self.settings.partitions
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=self.settings.request_timeout_ms,
                bootstrap_timeout_ms=self.settings.max_block_ms,
            )
        except (KafkaError, OSError) as exc:
            raise TransportError(f"cannot reach Kafka admin: {exc!r}") from exc
        try:
            existing = set(admin.list_topics())
            new = [NewTopic(t, n, 1) for t in dict.fromkeys(topics) if t not in existing]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    admin.create_topics(new)
        except KafkaError as exc:
            raise TransportError(f"cannot create topics {list(topics)}: {exc!r}") from exc
        finally:
            admin.close()

    def _partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            from kafka.errors import KafkaError

            producer = self._get_producer()
            try:
                self.ensure_topics([topic])
                parts = producer.partitions_for(topic)
            except (KafkaError, TransportError) as exc:
                raise self._kafka_error(f"no metadata for topic {topic!r}", exc) from exc
            if not parts:
                raise self._kafka_error(f"topic {topic!r} has no partitions", ValueError(topic))
            n = self._partitions[topic] = len(parts)
        return n

    def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        if not values:
            return
        if keys is not None and len(keys) != len(values):
            raise TransportError(f"{len(keys)} keys for {len(values)} values on {topic}")
        from kafka.errors import KafkaError

        n = self._partition_count(topic)
        producer = self._producer
        hdrs = list((headers or {}).items())
        parts = self._choose(len(values), keys, n)
        try:
            if self.settings.pack:
                self._send_packed(producer, topic, values, keys, parts, hdrs)
            else:
                send, futs = producer.send, self._futures
                for i, value in enumerate(values):
                    key = keys[i] if keys is not None else None
                    futs.append(send(topic, value, key, hdrs, parts[i]))
                self.sent_messages += len(values)
        except (KafkaError, AssertionError) as exc:
            raise self._kafka_error(f"cannot publish to {topic!r}", exc) from exc

    def _choose(self, count: int, keys: Sequence[bytes | None] | None, n: int) -> list[int]:
        if keys is None:
            start, self._rr = self._rr, self._rr + count
            return [(start + i) % n for i in range(count)]
        out = []
        for key in keys:
            if key is None:
                out.append(self._rr % n)
                self._rr += 1
            else:
                out.append(crc32c.crc32c(key) % n)
        return out

    def _send_packed(
        self,
        producer: Any,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None,
        parts: list[int],
        hdrs: list[tuple[str, bytes]],
    ) -> None:
        by_part: dict[int, list[int]] = {}
        for i, p in enumerate(parts):
            by_part.setdefault(p, []).append(i)
        codec = envelope_codec(self.settings.compression)
        packed = [*hdrs, (PACK_HEADER, codec)]
        limit, max_bytes = self.settings.pack, self.settings.pack_bytes
        for p, idx in by_part.items():
            chunk: list[bytes] = []
            size = 0
            for i in idx:
                v = values[i]
                if b"\n" in v:  # cannot be a JSON line: alone, with its key
                    key = keys[i] if keys is not None else None
                    self._futures.append(producer.send(topic, v, key, hdrs, p))
                    self.sent_messages += 1
                    continue
                if chunk and (len(chunk) >= limit or size + len(v) > max_bytes):
                    self._send_chunk(producer, topic, chunk, packed, p)
                    chunk, size = [], 0
                chunk.append(v)
                size += len(v) + 1
            if chunk:
                self._send_chunk(producer, topic, chunk, packed, p)

    def _send_chunk(
        self, producer: Any, topic: str, chunk: list[bytes], hdrs: list[Any], p: int
    ) -> None:
        value = b"\n".join(chunk)
        if hdrs[-1][1] == b"jsonl+zlib":
            value = zlib.compress(value, 1)
        self._futures.append(producer.send(topic, value, None, hdrs, p))
        self.sent_messages += 1

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record published so far is acknowledged by all in-sync replicas;
        raise :class:`TransportError` (and drop the producer) if any was not."""
        if self._producer is None:
            return
        from kafka.errors import KafkaError

        limit = timeout if timeout is not None else self.settings.flush_timeout
        try:
            self._producer.flush(timeout=limit)
        except KafkaError as exc:
            raise self._kafka_error(f"not acknowledged within {limit:g} s", exc) from exc
        failed = [f for f in self._futures if f.failed()]
        self._futures = []
        if failed:
            raise self._kafka_error(
                f"{len(failed)} batches not acknowledged", failed[0].exception or ValueError()
            )

    # -- consumer -------------------------------------------------------------------------
    def subscribe(self, topics: Sequence[str], group: str) -> KafkaGroupConsumer:
        """Join ``group`` on ``topics``, creating the missing ones first (as the in-memory
        broker does): a consumer subscribed to a topic made later may not see it until its
        next metadata refresh, minutes away."""
        self.ensure_topics(topics)
        return KafkaGroupConsumer(self.bootstrap, topics, group, self.settings)

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=self.settings.flush_timeout)
            finally:
                self._producer = None


class KafkaGroupConsumer:
    """One member of a consumer group; unpacks packed messages."""

    def __init__(
        self, bootstrap: list[str], topics: Sequence[str], group: str, settings: TransportSettings
    ) -> None:
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener
        from kafka.errors import KafkaError

        owner = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                for tp in revoked:  # their records go to the new owner, from the commit
                    owner._offsets.pop(tp, None)
                gone = set(revoked)
                owner._buf = [b for b in owner._buf if b[1] not in gone]

            def on_partitions_assigned(self, assigned: Any) -> None:
                parts = ",".join(sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))
                log.info("group %s member %x assigned %s", group, id(owner), parts)

        self.settings = settings
        self._offsets: dict[Any, int] = {}
        self._buf: list[tuple[Message, Any, int | None]] = []  # (record, tp, offset to commit)
        self.commit_failures = 0
        try:
            self._c = KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id="parkwatch",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                request_timeout_ms=max(settings.request_timeout_ms, 1000),
                bootstrap_timeout_ms=settings.max_block_ms,
                fetch_max_bytes=64 << 20,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                max_partition_fetch_bytes=16 << 20,
                reconnect_backoff_max_ms=1000,
            )
            self._c.subscribe(list(topics), listener=_Listener())
        except (KafkaError, OSError) as exc:
            raise TransportError(f"cannot join group {group!r}: {exc!r}") from exc

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        """Up to ``max_records`` records; the rest of a packed message waits in a buffer (its
        offset is committed only once all of it was returned)."""
        from kafka.errors import KafkaError

        if not self._buf:
            pack = self.settings.pack
            want = max(1, math.ceil(max_records / pack)) if pack else max_records
            try:
                batch = self._c.poll(timeout_ms=int(timeout * 1000), max_records=want)
            except KafkaError as exc:
                raise TransportError(f"poll failed: {exc!r}") from exc
            for tp, recs in batch.items():
                for r in recs:
                    self._buf.extend(_unpack(tp, r))
        out, self._buf = self._buf[:max_records], self._buf[max_records:]
        for _, tp, off in out:
            if off is not None:
                self._offsets[tp] = off
        return [m for m, _, _ in out]

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member holds now."""
        return {(tp.topic, tp.partition) for tp in self._c.assignment()}

    def commit(self) -> None:
        if not self._offsets:
            return
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._offsets.items()}
        try:
            self._c.commit(offsets, timeout_ms=self.settings.request_timeout_ms)
        except KafkaError as exc:  # rebalanced or broker away: the next commit covers these
            self.commit_failures += 1
            log.warning("commit failed (%d so far): %r", self.commit_failures, exc)
            return
        for tp, off in list(self._offsets.items()):
            if offsets[tp].offset == off:
                del self._offsets[tp]

    def close(self) -> None:
        self._c.close(autocommit=False)


def _unpack(tp: Any, r: Any) -> list[tuple[Message, Any, int | None]]:
    """The records of one Kafka message; the last carries the offset to commit."""
    headers = {k: v or b"" for k, v in (r.headers or [])}
    pack = headers.pop(PACK_HEADER, None)
    if pack in (b"jsonl", b"jsonl+zlib"):
        try:
            body = zlib.decompress(r.value) if pack == b"jsonl+zlib" else r.value
        except zlib.error:  # a corrupt envelope: handed on as is, undecodable downstream
            body = r.value
        msgs = [
            Message(tp.topic, tp.partition, r.offset, None, v, headers) for v in body.split(b"\n")
        ]
    else:
        msgs = [Message(tp.topic, tp.partition, r.offset, r.key, r.value, headers)]
    out: list[tuple[Message, Any, int | None]] = [(m, tp, None) for m in msgs]
    out[-1] = (msgs[-1], tp, r.offset + 1)
    return out


def _open(url: str, settings: TransportSettings) -> KafkaTransport:
    return KafkaTransport(parse_url(url), settings)


TRANSPORTS.register("kafka", _open)

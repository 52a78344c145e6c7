"""In-process transport: a partitioned log per topic, consumer groups, committed offsets.

The default when no broker is named. Semantics follow Kafka's closely enough that a stage
tested here behaves the same on Kafka: records are appended to a partition chosen from the
key (``crc32c(key) % partitions``, as the Kafka transport does), the members of a group
share the partitions (a join or leave reassigns them, and a member resumes a partition from
its group's committed offset), and ``commit`` stores the offsets after what ``poll`` returned.
A consumer closed without committing leaves its records to be delivered again.

``memory://`` names the process-wide default broker, ``memory://NAME`` a separate one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import crc32c

from parkwatch.errors import TransportError
from parkwatch.transport.base import TRANSPORTS, Message, TransportSettings


class MemoryBroker:
    """Topics, partitions and consumer groups of one process (thread-safe)."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.cond = threading.Condition()
        self.logs: dict[str, list[list[Message]]] = {}
        self.committed: dict[tuple[str, str, int], int] = {}
        self.members: dict[str, list[MemoryConsumer]] = {}
        self.generation = 0
        self._rr = 0

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        with self.cond:
            if topic not in self.logs:
                self.logs[topic] = [[] for _ in range(partitions or self.partitions)]

    def append(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None],
        headers: dict[str, bytes],
    ) -> None:
        with self.cond:
            self.create_topic(topic)
            parts = self.logs[topic]
            n = len(parts)
            for value, key in zip(values, keys, strict=True):
                if key is None:
                    p, self._rr = self._rr % n, self._rr + 1
                else:
                    p = crc32c.crc32c(key) % n
                log = parts[p]
                log.append(Message(topic, p, len(log), key, value, dict(headers)))
            self.cond.notify_all()

    def join(self, consumer: MemoryConsumer) -> None:
        with self.cond:
            self.members.setdefault(consumer.group, []).append(consumer)
            self.generation += 1

    def leave(self, consumer: MemoryConsumer) -> None:
        with self.cond:
            group = self.members.get(consumer.group, [])
            if consumer in group:
                group.remove(consumer)
                self.generation += 1
                self.cond.notify_all()

    def assignment(self, consumer: MemoryConsumer) -> list[tuple[str, int]]:
        """Round-robin share of the subscribed partitions among the group's members."""
        group = self.members.get(consumer.group, [])
        idx, n = group.index(consumer), len(group)
        topics = sorted(set().union(*(set(c.topics) for c in group)))
        every = [(t, p) for t in topics for p in range(len(self.logs.get(t, [])))]
        mine = [tp for tp in every if tp[0] in consumer.topics]
        return [tp for i, tp in enumerate(every) if i % n == idx and tp in mine]


_BROKERS: dict[str, MemoryBroker] = {}
_BROKERS_LOCK = threading.Lock()


def broker(name: str = "") -> MemoryBroker:
    """The process-wide broker called ``name`` (created on first use)."""
    with _BROKERS_LOCK:
        return _BROKERS.setdefault(name, MemoryBroker())


class MemoryConsumer:
    """One member of a consumer group on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, topics: Sequence[str], group: str) -> None:
        self.broker = broker
        self.topics = tuple(topics)
        self.group = group
        self._gen = -1
        self._assigned: list[tuple[str, int]] = []
        self._pos: dict[tuple[str, int], int] = {}
        self._closed = False
        for t in self.topics:
            broker.create_topic(t)
        broker.join(self)

    def _rebalance(self) -> None:
        b = self.broker
        if self._gen == b.generation:  # same generation: keep positions
            return
        self._gen = b.generation
        self._assigned = b.assignment(self)
        self._pos = {tp: b.committed.get((self.group, *tp), 0) for tp in self._assigned}

    def poll(self, timeout: float = 1.0, max_records: int = 500) -> list[Message]:
        if self._closed:
            raise TransportError("poll on a closed consumer")
        deadline = time.monotonic() + max(timeout, 0.0)
        b = self.broker
        with b.cond:
            while True:
                self._rebalance()
                out: list[Message] = []
                for tp in self._assigned:
                    log = b.logs[tp[0]][tp[1]]
                    pos = self._pos[tp]
                    take = log[pos : pos + max_records - len(out)]
                    out.extend(take)
                    self._pos[tp] = pos + len(take)
                    if len(out) >= max_records:
                        break
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                b.cond.wait(left)

    def commit(self) -> None:
        b = self.broker
        with b.cond:
            if self._gen != b.generation:  # rebalanced since poll: positions are stale
                return
            for tp, pos in self._pos.items():
                b.committed[(self.group, *tp)] = pos

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.broker.leave(self)


class MemoryTransport:
    """:class:`~parkwatch.transport.base.Transport` on a :class:`MemoryBroker`."""

    def __init__(self, broker_: MemoryBroker | None = None) -> None:
        self.broker = broker_ or MemoryBroker()

    def publish(
        self,
        topic: str,
        values: Sequence[bytes],
        keys: Sequence[bytes | None] | None = None,
        headers: dict[str, bytes] | None = None,
    ) -> None:
        if keys is None:
            keys = [None] * len(values)
        elif len(keys) != len(values):
            raise TransportError(f"{len(keys)} keys for {len(values)} values on {topic}")
        self.broker.append(topic, values, keys, headers or {})

    def flush(self, timeout: float | None = None) -> None:
        """Nothing to do: a publish is in the log when it returns."""

    def subscribe(self, topics: Sequence[str], group: str) -> MemoryConsumer:
        return MemoryConsumer(self.broker, topics, group)

    def close(self) -> None:
        """The broker lives on (other transports of the process may share it)."""


def _open(url: str, settings: TransportSettings) -> MemoryTransport:
    name = url.partition("://")[2].strip("/")
    return MemoryTransport(broker(name))


TRANSPORTS.register("memory", _open)

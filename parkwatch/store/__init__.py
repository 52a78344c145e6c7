"""Record stores, registered by name: ``sqlite`` (default, one file) and ``elasticsearch``.

A store takes records with ``put(records) -> int`` (idempotent by record id) and is closed with
``close()``. ``open_store(name, target, **options)`` opens one: a file path for ``sqlite``, a
URL for ``elasticsearch`` (imported on first use; the client is slow to import).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from parkwatch.registry import Registry
from parkwatch.schema import Record
from parkwatch.store.sqlite import SqliteStore, Store


class RecordStore(Protocol):
    def put(self, records: Iterable[Record]) -> int: ...
    def count(self, kind: str) -> int: ...  # records of a kind: flows, events, alerts, incidents
    def close(self) -> None: ...


STORES: Registry[Callable[..., RecordStore]] = Registry("store")
STORES.register("sqlite", SqliteStore.open)


@STORES.add("elasticsearch")
def _open_elasticsearch(target: str, **options: Any) -> RecordStore:
    from parkwatch.elastic import ElasticSink

    return ElasticSink.open(target, **options)


def open_store(name: str, target: str, **options: Any) -> RecordStore:
    """Open the store registered as ``name`` on ``target`` (path or URL)."""
    return STORES.get(name)(target, **options)


__all__ = ["STORES", "RecordStore", "SqliteStore", "Store", "open_store"]

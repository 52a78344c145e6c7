"""Elasticsearch sink: index templates, write aliases, bulk indexing with retry.

Layout per kind (flows, events, alerts, incidents; see :mod:`parkwatch.elastic_templates`):
index template ``<prefix>-<kind>`` for ``<prefix>-<kind>-*``, concrete index
``<prefix>-<kind>-000001`` and write alias ``<prefix>-<kind>`` (no ILM, no data streams; roll
over by hand by adding ``-000002`` and moving ``is_write_index``). Documents use the record's
``uid`` / ``id`` as ``_id``, so sending a record again overwrites it instead of duplicating.

Only compatibility-safe calls are used (``indices.put_index_template``, ``indices.create`` with
aliases, ``indices.exists_alias``, ``bulk``, ``search``/``count``). The 9.x Python client sends
``compatible-with=9`` media types, which Elasticsearch 8 refuses; with ``api_compat=8`` (the
default) the sink's HTTP node rewrites them to ``compatible-with=8``, which Elasticsearch 8 and
9 both accept (ES 9 serves the 8 REST API in compatibility mode).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, HttpHeaders, Urllib3HttpNode
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, Elasticsearch

from parkwatch.elastic_templates import KIND_OF, KINDS, doc_id, document, mappings
from parkwatch.errors import StoreError
from parkwatch.schema import Record

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_COMPAT_RE = re.compile(r"compatible-with=\d+")
_FIELD_RES = (
    re.compile(r"failed to parse field \[([^\]]+)\]"),
    re.compile(r"dynamic introduction of \[([^\]]+)\] within \[([^\]]+)\]"),
    re.compile(r"mapper \[([^\]]+)\]"),
)


def compat_node_class(major: int) -> type[Urllib3HttpNode]:
    """An HTTP node class that asks for REST API compatibility with ``major`` (e.g. 8)."""

    class CompatNode(Urllib3HttpNode):
        def perform_request(
            self,
            method: str,
            target: str,
            body: bytes | None = None,
            headers: HttpHeaders | None = None,
            request_timeout: DefaultType | float | None = DEFAULT,
        ) -> Any:
            if headers is not None:
                headers = headers.copy()
                for name in ("accept", "content-type"):
                    value = headers.get(name)
                    if value:
                        headers[name] = _COMPAT_RE.sub(f"compatible-with={major}", value)
            return super().perform_request(method, target, body, headers, request_timeout)

    CompatNode.__name__ = f"CompatNode{major}"
    return CompatNode


def make_client(url: str | Sequence[str], *, api_compat: int | None = 8, **options: Any) -> Any:
    """An :class:`Elasticsearch` client; retries are left to the sink (``max_retries=0``)."""
    kwargs: dict[str, Any] = {"max_retries": 0, "retry_on_timeout": False, **options}
    if api_compat is not None:
        kwargs["node_class"] = compat_node_class(api_compat)
    return Elasticsearch(url, **kwargs)


def rejection_error(item: dict[str, Any]) -> StoreError:
    """A StoreError naming index, document id and field from one bulk item's error."""
    err = item.get("error") or {}
    if not isinstance(err, dict):
        err = {"reason": str(err)}
    reason = str(err.get("reason", "rejected"))
    caused = err.get("caused_by") or {}
    fld = None
    for rx in _FIELD_RES:
        m = rx.search(reason)
        if m:
            fld = m.group(1)
            if m.re.groups == 2 and m.group(2) != "_doc":
                fld = f"{m.group(2)}.{m.group(1)}"
            break
    detail = f"{err.get('type', 'error')}: {reason}"
    if isinstance(caused, dict) and caused.get("reason"):
        detail += f" ({caused['reason']})"
    return StoreError(
        f"Elasticsearch index {item.get('_index')!r} rejected document {item.get('_id')!r}: "
        f"{detail}",
        field=fld,
        hint="fix the producer of that field or the index template (docs/OUTPUTS.md)",
    )


@dataclass
class EsStats:
    indexed: int = 0
    retries: int = 0
    rejected: int = 0
    errors: list[StoreError] = field(default_factory=list)


class ElasticSink:
    """Writes records to Elasticsearch (``put``), creating templates and aliases on first use."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "parkwatch",
        chunk_size: int = 500,
        max_retries: int = 5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        refresh: bool | str = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.refresh = refresh
        self.sleep = sleep
        self.stats = EsStats()
        self._ready = False

    @classmethod
    def open(cls, url: str, **options: Any) -> ElasticSink:
        """Sink on ``url`` (``http://host:9200``); ``api_compat`` and client options pass on."""
        client_opts = {k: options.pop(k) for k in list(options) if k not in _SINK_OPTIONS}
        return cls(make_client(url, **client_opts), **options)

    def alias(self, kind: str) -> str:
        return f"{self.prefix}-{kind}"

    def _try(self, what: str, fn: Callable[[], Any], last: bool) -> Any:
        """One cluster call: its answer, or None after a retryable failure (429/5xx,
        connection); a StoreError for other refusals and for the last try."""
        try:
            return fn()
        except ApiError as exc:
            if exc.status_code not in RETRY_STATUS or last:
                raise StoreError(
                    f"Elasticsearch refused {what}: {exc.status_code} {exc.message}"
                    f" ({_reason(exc.body)})",
                    hint="check the cluster's answer above and the index templates",
                ) from exc
        except (TransportConnectionError, ConnectionTimeout) as exc:
            if last:
                raise StoreError(
                    f"Elasticsearch unreachable for {what} after {self.max_retries + 1} "
                    f"tries: {exc}",
                    hint="check the Elasticsearch URL and that the cluster is up",
                ) from exc
        return None

    def _backoff(self) -> Iterator[bool]:
        """Yields once per try (True on the last), sleeping with exponential backoff between."""
        delay = self.initial_backoff
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            yield attempt == self.max_retries

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one cluster call, retrying 429/5xx/connection errors with backoff."""
        for last in self._backoff():
            resp = self._try(what, fn, last)
            if resp is not None:
                return resp
        raise AssertionError("unreachable")

    def setup(self) -> None:
        """Put every index template and create missing indices with their write alias."""
        for kind in KINDS:
            alias = self.alias(kind)
            body = {"settings": {"number_of_shards": 1}, "mappings": mappings(kind)}
            self._call(
                f"index template {alias}",
                partial(
                    self.client.indices.put_index_template,
                    name=alias,
                    index_patterns=[f"{alias}-*"],
                    priority=200,
                    template=body,
                    meta={"managed_by": "parkwatch"},
                ),
            )
            exists = self._call(
                f"alias {alias}", partial(self.client.indices.exists_alias, name=alias)
            )
            if not bool(exists):
                self._create(alias)
        self._ready = True

    def _create(self, alias: str) -> None:
        index = f"{alias}-000001"
        try:
            self._call(
                f"index {index}",
                lambda: self.client.indices.create(
                    index=index, aliases={alias: {"is_write_index": True}}
                ),
            )
        except StoreError as exc:
            if "resource_already_exists" not in str(exc):  # created by a concurrent writer
                raise

    def put(self, records: Iterable[Record]) -> int:
        """Index ``records``; returns the number indexed. Refused documents raise StoreError
        (after the rest of their chunk is written); the first refusal names index and field."""
        if not self._ready:
            self.setup()
        chunk: list[tuple[str, str, dict[str, Any]]] = []
        total = 0
        first_error: StoreError | None = None
        for rec in records:
            schema = getattr(type(rec), "SCHEMA", type(rec).__name__)
            kind = KIND_OF.get(schema)
            if kind is None:
                raise StoreError(f"no Elasticsearch index for {schema} records")
            chunk.append((self.alias(kind), doc_id(rec), document(rec)))
            if len(chunk) >= self.chunk_size:
                total, first_error = self._flush(chunk, total, first_error)
        if chunk:
            total, first_error = self._flush(chunk, total, first_error)
        if first_error is not None:
            raise first_error
        return total

    def _flush(
        self, chunk: list[tuple[str, str, dict[str, Any]]], total: int, err: StoreError | None
    ) -> tuple[int, StoreError | None]:
        ok, errors = self._bulk(chunk)
        chunk.clear()
        self.stats.indexed += ok
        self.stats.rejected += len(errors)
        self.stats.errors.extend(errors[: max(0, 100 - len(self.stats.errors))])
        return total + ok, err or (errors[0] if errors else None)

    def _bulk(self, actions: list[tuple[str, str, dict[str, Any]]]) -> tuple[int, list[StoreError]]:
        pending = list(actions)
        ok = 0
        errors: list[StoreError] = []
        for last in self._backoff():
            ops: list[dict[str, Any]] = []
            for index, _id, doc in pending:
                ops.append({"index": {"_index": index, "_id": _id}})
                ops.append(doc)
            call = partial(self.client.bulk, operations=ops, refresh=self.refresh)
            resp = self._try(f"bulk of {len(pending)} documents", call, last)
            if resp is None:
                continue
            retry: list[tuple[str, str, dict[str, Any]]] = []
            for action, item in zip(pending, resp["items"], strict=True):
                result = next(iter(item.values()))
                status = int(result.get("status", 500))
                if 200 <= status < 300:
                    ok += 1
                elif status in RETRY_STATUS:
                    retry.append(action)
                else:
                    errors.append(rejection_error(result))
            if not retry:
                return ok, errors
            pending = retry
        errors.extend(
            StoreError(
                f"Elasticsearch index {a[0]!r} did not accept document {a[1]!r} "
                f"after {self.max_retries + 1} tries (429/5xx)",
                hint="the cluster is overloaded; retry later or lower the rate",
            )
            for a in pending
        )
        return ok, errors

    def remove(self, kind: str, ids: Sequence[str]) -> int:
        """Delete documents ``ids`` of ``kind`` through its write alias (superseded incidents);
        returns how many were there. Documents in indices rolled over by hand stay."""
        if not ids:
            return 0
        if not self._ready:
            self.setup()
        alias = self.alias(kind)
        ops = [{"delete": {"_index": alias, "_id": i}} for i in ids]
        resp = self._call(
            f"delete of {len(ids)} documents",
            partial(self.client.bulk, operations=ops, refresh=self.refresh),
        )
        done = 0
        for item in resp["items"]:
            result = next(iter(item.values()))
            status = int(result.get("status", 500))
            if 200 <= status < 300:
                done += 1
            elif status != 404:  # 404: never indexed here, nothing to remove
                raise rejection_error(result)
        return done

    def search(self, kind: str, query: dict[str, Any], size: int = 100) -> list[dict[str, Any]]:
        """``_source`` of documents matching a DSL ``query`` (term/range) in ``kind``."""
        resp = self._call(
            f"search {self.alias(kind)}",
            lambda: self.client.search(index=self.alias(kind), query=query, size=size),
        )
        return [hit["_source"] for hit in resp["hits"]["hits"]]

    def count(self, kind: str, query: dict[str, Any] | None = None) -> int:
        self._call(f"refresh {self.alias(kind)}",
                   lambda: self.client.indices.refresh(index=self.alias(kind)))
        resp = self._call(
            f"count {self.alias(kind)}",
            lambda: self.client.count(index=self.alias(kind), query=query or {"match_all": {}}),
        )
        return int(resp["count"])

    def close(self) -> None:
        self.client.close()


_SINK_OPTIONS = frozenset(
    {"prefix", "chunk_size", "max_retries", "initial_backoff", "max_backoff", "refresh", "sleep"}
)


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return f"{err.get('type')}: {err.get('reason')}"
        return str(err or body)[:300]
    return str(body)[:300]

"""SQLite store: flows, events, alerts and incidents in one file, queryable after a restart.

Every record is kept whole (``record.to_json()``) next to indexed columns used by queries, and
``put`` upserts by record id (``uid`` / ``id``; records without one, ARP events and weirds, by
content hash), so sending a record again replaces it instead of duplicating it. The operator
workflow of incidents (``status``, ``acknowledged_at``, ``resolved_at``) belongs to the store:
a correlator re-sending an updated incident as ``open`` does not reopen one an operator has
acknowledged or resolved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from parkwatch.errors import StoreError
from parkwatch.schema import RECORD_TYPES, Alert, FlowRecord, Incident, Record
from parkwatch.store.migrations import MIGRATIONS, migrate
from parkwatch.tenancy import scope_incident
from parkwatch.transport.base import record_id

R = TypeVar("R", bound=Record)
_BY_SCHEMA = {t.SCHEMA: t for t in RECORD_TYPES}
_WORKFLOW = ("status", "acknowledged_at", "resolved_at")
ACTIVE = ("open", "acknowledged")
"""Statuses from which an incident can still be resolved or marked false positive."""
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "acknowledged": ("open",), "resolved": ACTIVE, "false_positive": ACTIVE,
}
"""Operator workflow: target status -> the statuses it may be reached from."""


def record_enterprises(rec: object) -> set[str]:
    """Enterprises a record involves: its ``enterprises`` and either side's enterprise."""
    ents = set(getattr(rec, "enterprises", ()) or ())
    for name in ("src_enterprise", "dst_enterprise"):
        value = getattr(rec, name, None)
        if value:
            ents.add(value)
    return ents


class SqliteStore:
    """The record store in one SQLite file (``:memory:`` for a throwaway one)."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> SqliteStore:
        where = str(path)
        try:
            # one connection per user (a console request may hop threads, never runs two at once)
            conn = sqlite3.connect(
                where, isolation_level=None, timeout=10.0, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            migrate(conn, MIGRATIONS, where)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the store: {exc}", file=where,
                hint="give a path to a ParkWatch SQLite store or to a new file",
            ) from exc
        return cls(conn, where)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # writes ---------------------------------------------------------------------------------

    def put(self, records: Iterable[Record]) -> int:
        """Upsert ``records`` in one transaction; returns how many were written."""
        n = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for rec in records:
                self._put_one(rec)
                n += 1
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self.conn.execute("ROLLBACK")
            raise StoreError(f"write failed, nothing written: {exc}", file=self.path) from exc
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return n

    def write(self, record: Record) -> None:
        """Sink-style single write."""
        self.put([record])

    def _upsert(self, table: str, key: str, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        sets = ", ".join(f"{c} = excluded.{c}" for c in row if c != key)
        self.conn.execute(
            f"INSERT INTO {table} ({cols}) VALUES ({marks}) "
            f"ON CONFLICT({key}) DO UPDATE SET {sets}",
            tuple(row.values()),
        )

    def _link(self, kind: str, rid: str, ents: set[str]) -> None:
        self.conn.execute("DELETE FROM enterprises WHERE kind = ? AND rid = ?", (kind, rid))
        self.conn.executemany(
            "INSERT INTO enterprises (kind, rid, enterprise) VALUES (?, ?, ?)",
            [(kind, rid, e) for e in sorted(ents)],
        )

    def _put_one(self, rec: Record) -> None:
        if not isinstance(rec, Record):
            raise StoreError(f"the store has no table for {type(rec).__name__} objects")
        if isinstance(rec, Incident):
            self._put_incident(rec)
            return
        rid = record_id(rec)
        if isinstance(rec, FlowRecord):
            kind, row = "flows", {
                "uid": rid, "start_ns": rec.start, "end_ns": rec.end, "vantage": rec.vantage,
                "src_ip": rec.src_ip, "dst_ip": rec.dst_ip, "proto": rec.proto,
            }
        elif isinstance(rec, Alert):
            kind, row = "alerts", {
                "uid": rid, "ts_ns": rec.ts, "detector": rec.detector, "rule_id": rec.rule_id,
                "level": rec.level, "category": rec.category,
            }
        elif type(rec).SCHEMA in ("parkwatch.ot_event", "parkwatch.arp", "parkwatch.weird"):
            kind, row = "events", {
                "uid": rid, "schema": type(rec).SCHEMA, "ts_ns": getattr(rec, "ts", 0),
                "protocol": getattr(rec, "protocol", None) or type(rec).SCHEMA.split(".")[1],
                "src_ip": getattr(rec, "src_ip", None) or getattr(rec, "sender_ip", None),
                "dst_ip": getattr(rec, "dst_ip", None) or getattr(rec, "target_ip", None),
                "flow_uid": getattr(rec, "flow_uid", None),
            }
        else:
            raise StoreError(f"the store has no table for {type(rec).schema_id()} records")
        row["record"] = rec.to_json()
        self._upsert(kind, "uid", row)
        self._link(kind, rid, record_enterprises(rec))

    def _put_incident(self, inc: Incident) -> None:
        old = self.conn.execute(
            "SELECT status, acknowledged_at_ns, resolved_at_ns FROM incidents WHERE id = ?",
            (inc.id,),
        ).fetchone()
        if old is not None and old[0] != "open" and inc.status == "open":
            inc = dataclasses.replace(
                inc, status=old[0], acknowledged_at=old[1], resolved_at=old[2]
            )
        self._upsert("incidents", "id", {
            "id": inc.id, "seq": self.next_seq(),
            "first_seen_ns": inc.first_seen, "last_seen_ns": inc.last_seen,
            "category": inc.category, "severity": inc.severity,
            "defended": None if inc.defended is None else int(inc.defended),
            "alert_count": inc.alert_count, "status": inc.status,
            "acknowledged_at_ns": inc.acknowledged_at, "resolved_at_ns": inc.resolved_at,
            "record": inc.to_json(),
        })
        self.conn.execute("DELETE FROM incident_alerts WHERE incident_id = ?", (inc.id,))
        self.conn.executemany(
            "INSERT OR IGNORE INTO incident_alerts (incident_id, alert_uid) VALUES (?, ?)",
            [(inc.id, uid) for uid in inc.alert_uids],
        )
        self._link("incidents", inc.id, record_enterprises(inc))

    def remove_incidents(self, ids: list[str]) -> int:
        """Delete incidents ``ids`` (superseded by a regrouping); return how many were here."""
        n = 0
        with self.transaction() as c:
            for iid in ids:
                c.execute("DELETE FROM incident_alerts WHERE incident_id = ?", (iid,))
                c.execute("DELETE FROM enterprises WHERE kind = 'incidents' AND rid = ?", (iid,))
                n += c.execute("DELETE FROM incidents WHERE id = ?", (iid,)).rowcount
        return n

    # operator workflow ----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def transition(self, iid: str, at_ns: int, to: str) -> Incident:
        """Move incident ``iid`` to status ``to`` at ``at_ns`` (a move of ``TRANSITIONS``), in
        the caller's transaction; the audited steps are :mod:`parkwatch.store.workflow`."""
        inc = self.incident(iid)
        if inc is None:
            raise StoreError(f"no incident {iid!r} in the store", file=self.path)
        if inc.status not in TRANSITIONS[to]:
            raise StoreError(
                f"incident {iid!r} is {inc.status}; cannot mark it {to}", field="status"
            )
        if at_ns < inc.first_seen:
            raise StoreError(f"incident {iid!r}: {to} time is before its first alert")
        when = "acknowledged_at" if to == "acknowledged" else "resolved_at"
        new = dataclasses.replace(inc, status=to)
        setattr(new, when, at_ns)
        self.conn.execute(
            f"UPDATE incidents SET status = ?, {when}_ns = ?, record = ?, seq = ? WHERE id = ?",
            (to, at_ns, new.to_json(), self.next_seq(), iid),
        )
        return new

    def next_seq(self) -> int:
        """The next value of the incidents' change sequence (API cursors follow it)."""
        row = self.conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM incidents").fetchone()
        return int(row[0])

    # queries --------------------------------------------------------------------------------

    def _select(
        self, cls: type[R], table: str, where: list[str], args: list[Any], order: str,
        enterprise: str | None,
    ) -> list[R]:
        if enterprise is not None:
            where.append(f"{'id' if table == 'incidents' else 'uid'} IN (SELECT rid FROM "
                         "enterprises WHERE kind = ? AND enterprise = ?)")
            args += [table, enterprise]
        schema = "schema" if table == "events" else "NULL"
        sql = f"SELECT {schema}, record FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.conn.execute(sql + f" ORDER BY {order}", args).fetchall()
        return [(_BY_SCHEMA[s] if s else cls).from_json(blob) for s, blob in rows]  # type: ignore[misc]

    def incidents(
        self, since_ns: int | None = None, until_ns: int | None = None,
        enterprise: str | None = None, status: str | None = None,
    ) -> list[Incident]:
        """Incidents whose [first_seen, last_seen] overlaps [since, until], by first_seen."""
        where, args = _window("last_seen_ns", "first_seen_ns", since_ns, until_ns)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        incs = self._select(Incident, "incidents", where, args, "first_seen_ns, id", enterprise)
        return incs if enterprise is None else self.scoped(incs, enterprise)

    def incident(self, incident_id: str, enterprise: str | None = None) -> Incident | None:
        """The incident; with ``enterprise``, as that enterprise sees it (None when it does
        not involve it)."""
        row = self.conn.execute(
            "SELECT record FROM incidents WHERE id = ?", (incident_id,)
        ).fetchone()
        inc = None if row is None else Incident.from_json(row[0])
        if inc is None or enterprise is None:
            return inc
        return self.scoped([inc], enterprise)[0] if enterprise in inc.enterprises else None

    def scoped(self, incs: list[Incident], enterprise: str) -> list[Incident]:
        """``incs`` as ``enterprise`` sees them (:func:`parkwatch.tenancy.scope_incident`)."""
        return [
            inc if set(inc.enterprises) <= {enterprise}
            else scope_incident(inc, self.alerts(incident_id=inc.id), enterprise)
            for inc in incs
        ]

    def alerts(
        self, since_ns: int | None = None, until_ns: int | None = None,
        enterprise: str | None = None, incident_id: str | None = None,
    ) -> list[Alert]:
        """Alerts with ``since <= ts <= until`` (optionally of one incident), by time."""
        where, args = _window("ts_ns", "ts_ns", since_ns, until_ns)
        if incident_id is not None:
            where.append("uid IN (SELECT alert_uid FROM incident_alerts WHERE incident_id = ?)")
            args.append(incident_id)
        return self._select(Alert, "alerts", where, args, "ts_ns, uid", enterprise)

    def flows(
        self, since_ns: int | None = None, until_ns: int | None = None,
        enterprise: str | None = None,
    ) -> list[FlowRecord]:
        where, args = _window("end_ns", "start_ns", since_ns, until_ns)
        return self._select(FlowRecord, "flows", where, args, "start_ns, uid", enterprise)

    def events(
        self, since_ns: int | None = None, until_ns: int | None = None,
        enterprise: str | None = None,
    ) -> list[Record]:
        where, args = _window("ts_ns", "ts_ns", since_ns, until_ns)
        return self._select(Record, "events", where, args, "ts_ns, uid", enterprise)

    def indicators(
        self, since_ns: int | None = None, until_ns: int | None = None,
        enterprise: str | None = None,
    ) -> dict[str, Any]:
        """Counts an indicator report needs: incidents by category/severity/status, defended
        verdicts and ratio (defended / (defended + succeeded); None without verdicts), mean
        time to acknowledge/resolve (ns from first_seen), and the number of alerts."""
        incs = self.incidents(since_ns, until_ns, enterprise)
        verdicts = Counter({True: 0, False: 0, None: 0})
        verdicts.update(i.defended for i in incs)
        decided = verdicts[True] + verdicts[False]
        ack = [i.acknowledged_at - i.first_seen for i in incs if i.acknowledged_at is not None]
        res = [i.resolved_at - i.first_seen for i in incs if i.resolved_at is not None]
        return {
            "incidents": len(incs),
            "alerts": len(self.alerts(since_ns, until_ns, enterprise)),
            "by_category": dict(sorted(Counter(i.category for i in incs).items())),
            "by_severity": dict(sorted(Counter(i.severity for i in incs).items())),
            "by_status": dict(sorted(Counter(i.status for i in incs).items())),
            "defended": verdicts[True],
            "succeeded": verdicts[False],
            "undecided": verdicts[None],
            "defended_ratio": verdicts[True] / decided if decided else None,
            "mean_time_to_acknowledge_ns": sum(ack) // len(ack) if ack else None,
            "mean_time_to_resolve_ns": sum(res) // len(res) if res else None,
        }

    def count(self, table: str) -> int:
        if table not in ("flows", "events", "alerts", "incidents"):
            raise StoreError(f"no table {table!r}")
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


Store = SqliteStore


def _window(
    end_col: str, start_col: str, since: int | None, until: int | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append(f"{end_col} >= ?")
        args.append(since)
    if until is not None:
        where.append(f"{start_col} <= ?")
        args.append(until)
    return where, args


"""What the console shows beside incidents: campaigns, replay scorecards, the asset inventory,
and cursor pages for the enterprise API.

Cursors: alerts and events are paged by their row number (records are upserted by id, so a
resent record keeps its place); incidents by their change sequence ``seq``, which every write
and every triage step moves, so a platform polling ``since=<cursor>`` also gets updates of
incidents it has seen before.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from parkwatch.schema import Alert, Incident, Record
from parkwatch.store.sqlite import _BY_SCHEMA, SqliteStore

PAGE_MAX = 1000
"""Largest page the API hands out."""


def put_campaigns(st: SqliteStore, campaigns: list[dict[str, Any]]) -> None:
    """Upsert campaigns (``Campaign.to_dict()`` form, times in ns under ``*_ns`` keys)."""
    with st.transaction() as c:
        for camp in campaigns:
            c.execute(
                "INSERT OR REPLACE INTO campaigns (id, first_seen_ns, last_seen_ns, record) "
                "VALUES (?, ?, ?, ?)",
                (camp["id"], camp["first_seen_ns"], camp["last_seen_ns"], orjson.dumps(camp)),
            )
            st._link("campaigns", camp["id"], set(camp.get("enterprises", ())))


def campaigns(st: SqliteStore, enterprise: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT record FROM campaigns", []
    if enterprise is not None:
        sql += (" WHERE id IN (SELECT rid FROM enterprises WHERE kind = 'campaigns' "
                "AND enterprise = ?)")
        args.append(enterprise)
    rows = st.conn.execute(sql + " ORDER BY first_seen_ns, id", args).fetchall()
    return [orjson.loads(r[0]) for r in rows]


def campaign(st: SqliteStore, cid: str) -> dict[str, Any] | None:
    row = st.conn.execute("SELECT record FROM campaigns WHERE id = ?", (cid,)).fetchone()
    return None if row is None else orjson.loads(row[0])


def put_replay(
    st: SqliteStore, captures: list[str], scorecard: dict[str, Any], manifest: dict[str, Any]
) -> int:
    cur = st.conn.execute(
        "INSERT INTO replays (ts_ns, captures, scorecard, manifest) VALUES (?, ?, ?, ?)",
        (time.time_ns(), orjson.dumps(captures).decode(), orjson.dumps(scorecard),
         orjson.dumps(manifest)),
    )
    return int(cur.lastrowid or 0)


def replays(st: SqliteStore, limit: int = 100) -> list[dict[str, Any]]:
    rows = st.conn.execute(
        "SELECT seq, ts_ns, captures, scorecard, manifest FROM replays ORDER BY seq DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        {"seq": r[0], "ts_ns": r[1], "captures": orjson.loads(r[2]),
         "scorecard": orjson.loads(r[3]), "manifest": orjson.loads(r[4])}
        for r in rows
    ]


def put_assets(st: SqliteStore, assets: list[dict[str, Any]]) -> None:
    """Store asset dicts (``parkwatch.assets.Asset.to_dict()``), replacing by IP; the caller
    merges with :func:`assets` first when inventories of several runs should combine."""
    with st.transaction() as c:
        for a in assets:
            c.execute(
                "INSERT OR REPLACE INTO assets (ip, enterprise, first_ns, last_ns, record) "
                "VALUES (?, ?, ?, ?, ?)",
                (a["ip"], a.get("enterprise"), a["first_seen"], a["last_seen"], orjson.dumps(a)),
            )


def assets(st: SqliteStore, enterprise: str | None = None) -> list[dict[str, Any]]:
    sql, args = "SELECT record FROM assets", []
    if enterprise is not None:
        sql += " WHERE enterprise = ?"
        args.append(enterprise)
    return [orjson.loads(r[0]) for r in st.conn.execute(sql + " ORDER BY ip", args).fetchall()]


def _scope(table: str, key: str, enterprise: str | None) -> tuple[str, list[Any]]:
    if enterprise is None:
        return "", []
    return (f" AND {key} IN (SELECT rid FROM enterprises WHERE kind = ? AND enterprise = ?)",
            [table, enterprise])


def _page(
    st: SqliteStore, table: str, key: str, cursor: str, enterprise: str | None, after: int,
    limit: int,
) -> tuple[list[Any], int]:
    """Records of ``table`` with ``cursor > after`` in cursor order, and the next cursor."""
    extra, args = _scope(table, key, enterprise)
    schema = "schema" if table == "events" else "NULL"
    rows = st.conn.execute(
        f"SELECT {cursor}, {schema}, record FROM {table} WHERE {cursor} > ?{extra} "
        f"ORDER BY {cursor} LIMIT ?",
        [after, *args, min(limit, PAGE_MAX)],
    ).fetchall()
    kinds: dict[str, type[Record]] = {"incidents": Incident, "alerts": Alert}
    kind = kinds.get(table)
    recs = [(kind or _BY_SCHEMA[s]).from_json(blob) for _, s, blob in rows]
    return recs, (rows[-1][0] if rows else after)


def incident_page(
    st: SqliteStore, enterprise: str | None, after: int = 0, limit: int = 100
) -> tuple[list[Incident], int]:
    """Incidents changed after cursor ``after``, oldest change first; and the next cursor."""
    incs, nxt = _page(st, "incidents", "id", "seq", enterprise, after, limit)
    return (incs if enterprise is None else st.scoped(incs, enterprise)), nxt


def alert_page(
    st: SqliteStore, enterprise: str | None, after: int = 0, limit: int = 100
) -> tuple[list[Alert], int]:
    """Alerts stored after cursor ``after`` (their row number), and the next cursor."""
    return _page(st, "alerts", "uid", "rowid", enterprise, after, limit)


def event_page(
    st: SqliteStore, enterprise: str | None, after: int = 0, limit: int = 100
) -> tuple[list[Record], int]:
    """Events (OT/IT, ARP, weirds) stored after cursor ``after``, and the next cursor."""
    return _page(st, "events", "uid", "rowid", enterprise, after, limit)


def flows_by_uid(st: SqliteStore, uids: list[str]) -> list[Record]:
    """The stored flows among ``uids`` (an incident's evidence), by start time."""
    return _by_uid(st, "flows", "NULL", uids, "start_ns")


def events_by_uid(st: SqliteStore, uids: list[str]) -> list[Record]:
    return _by_uid(st, "events", "schema", uids, "ts_ns")


def _by_uid(st: SqliteStore, table: str, schema: str, uids: list[str], order: str) -> list[Record]:
    out: list[Record] = []
    for k in range(0, len(uids), 500):
        part = uids[k:k + 500]
        marks = ", ".join("?" for _ in part)
        out += [
            _BY_SCHEMA[s or "parkwatch.flow"].from_json(blob)
            for s, blob, _ in st.conn.execute(
                f"SELECT {schema}, record, {order} FROM {table} WHERE uid IN ({marks})", part
            ).fetchall()
        ]
    return sorted(out, key=lambda r: int(getattr(r, "ts", None) or getattr(r, "start", None) or 0))


def events_named(
    st: SqliteStore, functions: dict[str, frozenset[str]], enterprise: str | None = None,
    direction: str = "request",
) -> list[Record]:
    """OT events whose (protocol, function_name) is in ``functions`` and whose direction is
    ``direction``, by time; the filter runs in SQLite, so a store of many polls stays fast."""
    pairs = [(p, f) for p, names in functions.items() for f in sorted(names)]
    if not pairs:
        return []
    extra, args = _scope("events", "uid", enterprise)
    doc = "CAST(record AS TEXT)"
    sql = (
        f"SELECT schema, record FROM events WHERE schema = 'parkwatch.ot_event' "
        f"AND json_extract({doc}, '$.direction') = ? "
        f"AND protocol || char(31) || json_extract({doc}, '$.function_name') IN "
        f"(SELECT value FROM json_each(?)){extra} ORDER BY ts_ns, uid"
    )
    keys = orjson.dumps([f"{p}\x1f{f}" for p, f in pairs]).decode()
    rows = st.conn.execute(sql, [direction, keys, *args]).fetchall()
    return [_BY_SCHEMA[s].from_json(blob) for s, blob in rows]

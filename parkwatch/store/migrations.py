"""Schema migrations of the SQLite store: an append-only list of steps, tracked by user_version.

``PRAGMA user_version`` holds the number of steps applied. Opening a database applies the
missing steps in order, each in its own transaction (the version moves with the step, so a
crash leaves the database at a step boundary). Never edit a released step: append a new one.
A database whose version is above the steps this ParkWatch knows was written by a newer
ParkWatch and is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from parkwatch.errors import StoreError

MIGRATIONS: list[tuple[str, ...]] = [
    # 1: one table per record kind: the full record as JSON plus indexed query columns;
    # a link table enterprise -> record for per-enterprise queries and feeds.
    (
        """CREATE TABLE flows (
            uid TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
            vantage TEXT, src_ip TEXT, dst_ip TEXT, proto INTEGER, record BLOB NOT NULL)""",
        "CREATE INDEX flows_start ON flows (start_ns)",
        """CREATE TABLE events (
            uid TEXT PRIMARY KEY, schema TEXT NOT NULL, ts_ns INTEGER NOT NULL,
            protocol TEXT, src_ip TEXT, dst_ip TEXT, flow_uid TEXT, record BLOB NOT NULL)""",
        "CREATE INDEX events_ts ON events (ts_ns)",
        "CREATE INDEX events_flow ON events (flow_uid)",
        """CREATE TABLE alerts (
            uid TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, detector TEXT NOT NULL,
            rule_id TEXT NOT NULL, level TEXT NOT NULL, category TEXT, record BLOB NOT NULL)""",
        "CREATE INDEX alerts_ts ON alerts (ts_ns)",
        """CREATE TABLE incidents (
            id TEXT PRIMARY KEY, first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL,
            category TEXT NOT NULL, severity TEXT NOT NULL, defended INTEGER,
            alert_count INTEGER NOT NULL, status TEXT NOT NULL,
            acknowledged_at_ns INTEGER, resolved_at_ns INTEGER, record BLOB NOT NULL)""",
        "CREATE INDEX incidents_seen ON incidents (first_seen_ns, last_seen_ns)",
        """CREATE TABLE incident_alerts (
            incident_id TEXT NOT NULL, alert_uid TEXT NOT NULL,
            PRIMARY KEY (incident_id, alert_uid)) WITHOUT ROWID""",
        "CREATE INDEX incident_alerts_alert ON incident_alerts (alert_uid)",
        """CREATE TABLE enterprises (
            kind TEXT NOT NULL, rid TEXT NOT NULL, enterprise TEXT NOT NULL,
            PRIMARY KEY (kind, rid, enterprise)) WITHOUT ROWID""",
        "CREATE INDEX enterprises_by ON enterprises (enterprise, kind)",
    ),
    # 2: the console: operator workflow (assignee, change sequence for API cursors), accounts,
    # sessions, enterprise API tokens, audit log, comments, suppressions made from false
    # positives, campaigns, replay scorecards and the passive asset inventory.
    (
        "ALTER TABLE incidents ADD COLUMN assignee TEXT",
        "ALTER TABLE incidents ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
        "UPDATE incidents SET seq = rowid",
        "CREATE INDEX incidents_seq ON incidents (seq)",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, enterprise TEXT,
            pw_hash TEXT NOT NULL, created_ns INTEGER NOT NULL)""",
        """CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL,
            created_ns INTEGER NOT NULL, expires_ns INTEGER NOT NULL)""",
        """CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE, enterprise TEXT NOT NULL,
            label TEXT NOT NULL, created_ns INTEGER NOT NULL, revoked_ns INTEGER)""",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, actor TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT, detail TEXT NOT NULL)""",
        "CREATE INDEX audit_target ON audit (target)",
        "CREATE INDEX audit_actor ON audit (actor, action, ts_ns)",
        """CREATE TABLE comments (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, incident_id TEXT NOT NULL,
            ts_ns INTEGER NOT NULL, author TEXT NOT NULL, text TEXT NOT NULL)""",
        "CREATE INDEX comments_incident ON comments (incident_id)",
        """CREATE TABLE suppressions (
            id TEXT PRIMARY KEY, created_ns INTEGER NOT NULL, author TEXT NOT NULL,
            incident_id TEXT, rule TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1)""",
        """CREATE TABLE campaigns (
            id TEXT PRIMARY KEY, first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL,
            record BLOB NOT NULL)""",
        """CREATE TABLE replays (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL,
            captures TEXT NOT NULL, scorecard BLOB NOT NULL, manifest BLOB NOT NULL)""",
        """CREATE TABLE assets (
            ip TEXT PRIMARY KEY, enterprise TEXT, first_ns INTEGER NOT NULL,
            last_ns INTEGER NOT NULL, record BLOB NOT NULL)""",
    ),
]
"""Migration steps; step ``n`` (1-based) moves ``user_version`` from ``n - 1`` to ``n``."""


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection, steps: Sequence[Sequence[str]] = MIGRATIONS, where: str = ""
) -> int:
    """Apply the steps ``conn`` lacks; returns how many were applied."""
    current = version(conn)
    if current > len(steps):
        raise StoreError(
            f"database schema version {current} is newer than this ParkWatch knows "
            f"({len(steps)})",
            file=where or None,
            hint="open it with the ParkWatch version that wrote it, or use a new file",
        )
    for n in range(current, len(steps)):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql in steps[n]:
                conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {n + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StoreError(f"migration step {n + 1} failed: {exc}", file=where or None) from exc
    return len(steps) - current

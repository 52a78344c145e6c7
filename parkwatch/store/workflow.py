"""Operator triage on stored incidents, each step written to the audit log (who, what, when).

Steps: acknowledge, assign, comment, resolve and mark false positive. A false positive closes
the incident and creates suppression rules (one per attacker: its category from that attacker)
that the correlator applies to later alerts, so the incident's twin is not raised again. The
console and the ``parkwatch incidents`` commands both go through these functions.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from parkwatch.errors import StoreError
from parkwatch.schema import Incident
from parkwatch.store.sqlite import ACTIVE, SqliteStore


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    seq: int
    ts_ns: int
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class Comment:
    """An operator's note on an incident."""

    seq: int
    incident_id: str
    ts_ns: int
    author: str
    text: str


def audit(
    st: SqliteStore, actor: str, action: str, target: str | None, **detail: Any
) -> None:
    """Append to the audit log (inside the caller's transaction, if any)."""
    st.conn.execute(
        "INSERT INTO audit (ts_ns, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (time.time_ns(), actor, action, target, orjson.dumps(detail).decode()),
    )


def audit_log(
    st: SqliteStore, target: str | None = None, limit: int = 200, actor: str | None = None,
    action: str | None = None,
) -> list[AuditEntry]:
    """Newest first, at most ``limit``; only entries with the given target, actor, action."""
    sql = "SELECT seq, ts_ns, actor, action, target, detail FROM audit"
    where, args = [], []
    for col, value in (("target", target), ("actor", actor), ("action", action)):
        if value is not None:
            where.append(f"{col} = ?")
            args.append(value)
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = st.conn.execute(sql + " ORDER BY seq DESC LIMIT ?", [*args, limit]).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], r[4], orjson.loads(r[5])) for r in rows]


def _now(at_ns: int | None) -> int:
    return time.time_ns() if at_ns is None else at_ns


def acknowledge(st: SqliteStore, iid: str, actor: str, at_ns: int | None = None) -> Incident:
    with st.transaction():
        inc = st.transition(iid, _now(at_ns), "acknowledged")
        audit(st, actor, "acknowledge", iid)
    return inc


def resolve(
    st: SqliteStore, iid: str, actor: str, at_ns: int | None = None, note: str = ""
) -> Incident:
    with st.transaction():
        inc = st.transition(iid, _now(at_ns), "resolved")
        if note:
            _comment(st, iid, actor, note)
        audit(st, actor, "resolve", iid, note=note)
    return inc


def assign(st: SqliteStore, iid: str, actor: str, assignee: str) -> Incident:
    """Give ``iid`` to an operator (a console user with that role); ``""`` unassigns."""
    inc = _get(st, iid)
    assignee = assignee.strip()
    if assignee:
        row = st.conn.execute("SELECT role FROM users WHERE name = ?", (assignee,)).fetchone()
        if row is None or row[0] != "operator":
            raise StoreError(
                f"{assignee!r} is not an operator", field="assignee",
                hint="assign to a user added with parkwatch users add --role operator",
            )
    with st.transaction() as c:
        c.execute(
            "UPDATE incidents SET assignee = ?, seq = ? WHERE id = ?",
            (assignee or None, st.next_seq(), iid),
        )
        audit(st, actor, "assign", iid, assignee=assignee)
    return inc


def assignee(st: SqliteStore, iid: str) -> str | None:
    row = st.conn.execute("SELECT assignee FROM incidents WHERE id = ?", (iid,)).fetchone()
    return None if row is None else row[0]


def _comment(st: SqliteStore, iid: str, author: str, text: str) -> None:
    st.conn.execute(
        "INSERT INTO comments (incident_id, ts_ns, author, text) VALUES (?, ?, ?, ?)",
        (iid, time.time_ns(), author, text),
    )


def comment(st: SqliteStore, iid: str, actor: str, text: str) -> None:
    text = text.strip()
    if not text:
        raise StoreError("empty comment", field="text")
    if len(text) > 4000:
        raise StoreError("comment longer than 4000 characters", field="text")
    _get(st, iid)
    with st.transaction():
        _comment(st, iid, actor, text)
        audit(st, actor, "comment", iid, length=len(text))


def comments(st: SqliteStore, iid: str) -> list[Comment]:
    rows = st.conn.execute(
        "SELECT seq, incident_id, ts_ns, author, text FROM comments WHERE incident_id = ? "
        "ORDER BY seq",
        (iid,),
    ).fetchall()
    return [Comment(*r) for r in rows]


def false_positive(
    st: SqliteStore, iid: str, actor: str, reason: str, at_ns: int | None = None
) -> tuple[Incident, list[dict[str, Any]]]:
    """Close ``iid`` as a false positive; returns it and the suppression rules created."""
    if not reason.strip():
        raise StoreError("say why it is a false positive", field="reason")
    inc = _get(st, iid)
    rules = suppression_rules_for(inc, f"false positive ({actor}): {reason.strip()}")
    now = time.time_ns()
    with st.transaction() as c:
        inc = st.transition(iid, _now(at_ns), "false_positive")
        for rule in rules:
            key = orjson.dumps({**rule, "reason": None}, option=orjson.OPT_SORT_KEYS)
            sid = "sup-" + hashlib.sha1(key).hexdigest()[:12]
            c.execute(
                "INSERT OR REPLACE INTO suppressions (id, created_ns, author, incident_id, rule, "
                "active) VALUES (?, ?, ?, ?, ?, 1)",
                (sid, now, actor, iid, orjson.dumps(rule).decode()),
            )
        audit(st, actor, "false_positive", iid, reason=reason.strip(), suppressions=len(rules))
    return inc, rules


def suppression_rules_for(inc: Incident, reason: str) -> list[dict[str, Any]]:
    """The suppression rules a false positive creates (keys of correlator suppression files)."""
    if not inc.attackers:
        return [{"category": inc.category, "reason": reason}]
    return [{"category": inc.category, "attacker": a, "reason": reason} for a in inc.attackers]


def suppressions(st: SqliteStore, active_only: bool = True) -> list[dict[str, Any]]:
    """Stored suppression rules (each with ``id``, ``author``, ``incident_id``, ``rule``)."""
    sql = "SELECT id, created_ns, author, incident_id, rule, active FROM suppressions"
    if active_only:
        sql += " WHERE active = 1"
    return [
        {"id": r[0], "created_ns": r[1], "author": r[2], "incident_id": r[3],
         "rule": orjson.loads(r[4]), "active": bool(r[5])}
        for r in st.conn.execute(sql + " ORDER BY created_ns, id").fetchall()
    ]


def lift_suppression(st: SqliteStore, sid: str, actor: str) -> bool:
    with st.transaction() as c:
        done = c.execute(
            "UPDATE suppressions SET active = 0 WHERE id = ? AND active = 1", (sid,)
        ).rowcount > 0
        if done:
            audit(st, actor, "lift_suppression", sid)
    return done


def _get(st: SqliteStore, iid: str) -> Incident:
    inc = st.incident(iid)
    if inc is None:
        raise StoreError(f"no incident {iid!r} in the store", file=st.path)
    return inc


__all__ = [
    "ACTIVE", "AuditEntry", "Comment", "acknowledge", "assign", "assignee", "audit", "audit_log",
    "comment", "comments", "false_positive", "lift_suppression", "resolve",
    "suppression_rules_for", "suppressions",
]

"""SQLite store: upserts by id, queries, operator workflow, migrations, restart; registry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from parkwatch.errors import StoreError
from parkwatch.schema import Alert, ArpEvent, FlowRecord, Incident, OtEvent, Weird
from parkwatch.store import STORES, SqliteStore, open_store, workflow
from parkwatch.store.migrations import MIGRATIONS, migrate, version
from tests.servers_es import es_url  # noqa: F401

T0 = 1_714_557_600 * 1_000_000_000  # 2024-05-01T10:00:00Z
S = 1_000_000_000


def sample_flow(i: int = 0) -> FlowRecord:
    return FlowRecord(
        uid=f"F{i:04d}", start=T0 + i * S, end=T0 + i * S + 250_000_000, vantage="park-gw",
        src_ip="10.1.1.5", src_port=40000 + i, dst_ip="10.1.2.10", dst_port=502, proto=6,
        community_id="1:LQU9qZlK+B5F3KDmev6m5PMibrg=", conn_state="SF", history="ShADadFf",
        end_reason="fin", orig_pkts=6, orig_bytes=400, orig_payload_bytes=24, orig_l2_bytes=484,
        orig_flags="FSPA", resp_pkts=5, resp_bytes=380, resp_payload_bytes=20,
        resp_l2_bytes=450, resp_flags="FSPA", app_proto="modbus", src_enterprise="ent-a",
        src_zone="it", dst_enterprise="ent-a", dst_zone="ot", dst_role="plc",
    )


def sample_event(i: int = 0) -> OtEvent:
    return OtEvent(
        uid=f"E{i:04d}", ts=T0 + i * S + 100_000_000, protocol="modbus", direction="request",
        src_ip="10.1.1.5", src_port=40000 + i, dst_ip="10.1.2.10", dst_port=502,
        community_id="1:LQU9qZlK+B5F3KDmev6m5PMibrg=", flow_uid=f"F{i:04d}", vantage="park-gw",
        unit=1, function_code=6, function_name="write_single_register", address=40001,
        quantity=1, values=(1500,), data_area="holding_register", src_enterprise="ent-a",
        dst_enterprise="ent-a", dst_role="plc", attrs={"register_name": "setpoint"},
    )


def sample_alert(i: int = 0, enterprises: tuple[str, ...] = ("ent-a",)) -> Alert:
    return Alert(
        uid=f"A{i:04d}", ts=T0 + i * S, detector="sigma", rule_id="pw-ot-write",
        title="Modbus write from IT zone", level="high", category="ot_unauthorized_write",
        techniques=("T0855",), attackers=("10.1.1.5",), targets=("10.1.2.10",),
        vantage="park-gw", flow_uids=(f"F{i:04d}",), event_uids=(f"E{i:04d}",),
        reason="function_code=6 from zone it", tactics=("impair-process-control",),
        enterprises=enterprises, evidence={"function_code": 6, "src_zone": "it"},
    )


def sample_incident(
    iid: str = "inc-1", enterprises: tuple[str, ...] = ("ent-a",), first: int = T0,
    defended: bool | None = False, severity: str = "critical",
) -> Incident:
    return Incident(
        id=iid, first_seen=first, last_seen=first + 5 * S, category="ot_unauthorized_write",
        severity=severity, techniques=("T0855",), attackers=("10.1.1.5",),
        targets=("10.1.2.10",), enterprises=enterprises, defended=defended, alert_count=2,
        alert_uids=("A0000", "A0001"), title="OT writes from the IT zone",
        tactics=("impair-process-control",), vantages=("park-gw",),
    )


@pytest.fixture
def db(tmp_path: Path) -> SqliteStore:
    return SqliteStore.open(tmp_path / "pw.db")


def test_every_kind_round_trips_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "pw.db"
    arp = ArpEvent(ts=T0, op="is-at", sender_mac="02:00:00:00:00:09", sender_ip="10.1.1.9",
                   target_mac="02:00:00:00:00:01", target_ip="10.1.1.1")
    weird = Weird(ts=T0 + 1, name="truncated_ipv4_header", layer="ip", detail="12 < 20")
    recs = [sample_flow(), sample_event(), arp, weird, sample_alert(), sample_incident()]
    with SqliteStore.open(path) as store:
        assert store.put(recs) == 6
    with SqliteStore.open(path) as store:
        assert store.flows() == [recs[0]]
        assert store.events() == [arp, weird, recs[1]]  # by time
        assert store.alerts() == [recs[4]]
        assert store.incidents() == [recs[5]]
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_put_is_idempotent_by_id_and_updates_in_place(db: SqliteStore) -> None:
    db.put([sample_alert(i) for i in range(3)] + [sample_incident()])
    db.put([sample_alert(i) for i in range(3)] + [sample_incident()])
    newer = sample_alert(1)
    newer.level = "critical"
    grown = sample_incident()
    grown.alert_count, grown.alert_uids = 3, ("A0000", "A0001", "A0002")
    db.put([newer, grown])
    assert db.count("alerts") == 3 and db.count("incidents") == 1
    assert [a.level for a in db.alerts()] == ["high", "critical", "high"]
    assert [a.uid for a in db.alerts(incident_id="inc-1")] == ["A0000", "A0001", "A0002"]
    arp = ArpEvent(ts=T0, op="who-has", sender_mac="02:00:00:00:00:09", sender_ip="10.1.1.9",
                   target_mac="00:00:00:00:00:00", target_ip="10.1.1.1")
    db.put([arp, arp])
    assert db.count("events") == 1


def test_queries_filter_by_time_window_and_enterprise(db: SqliteStore) -> None:
    db.put([
        sample_incident("inc-a", ("ent-a",), T0),
        sample_incident("inc-b", ("ent-b",), T0 + 100 * S),
        sample_incident("inc-ab", ("ent-a", "ent-b"), T0 + 200 * S),
        sample_alert(0, ("ent-a",)), sample_alert(100, ("ent-b",)), sample_alert(200, ()),
    ])
    ids = lambda incs: [i.id for i in incs]  # noqa: E731
    assert ids(db.incidents()) == ["inc-a", "inc-b", "inc-ab"]
    assert ids(db.incidents(enterprise="ent-a")) == ["inc-a", "inc-ab"]
    assert ids(db.incidents(enterprise="ent-b")) == ["inc-b", "inc-ab"]
    assert ids(db.incidents(enterprise="ent-c")) == []
    assert ids(db.incidents(enterprise="ENT-A")) == []  # exact ids, no case folding
    # overlap: inc-a spans [T0, T0+5s]
    assert ids(db.incidents(since_ns=T0 + 5 * S, until_ns=T0 + 99 * S)) == ["inc-a"]
    assert ids(db.incidents(since_ns=T0 + 6 * S, until_ns=T0 + 99 * S)) == []
    assert ids(db.incidents(since_ns=T0 + 6 * S, until_ns=T0 + 100 * S)) == ["inc-b"]
    assert [a.uid for a in db.alerts(since_ns=T0 + S)] == ["A0100", "A0200"]
    assert [a.uid for a in db.alerts(enterprise="ent-b")] == ["A0100"]
    db.put([sample_flow(0)])
    assert len(db.flows(enterprise="ent-a")) == 1 and db.flows(enterprise="ent-b") == []


def test_acknowledge_and_resolve_and_keep_workflow_on_resend(
    db: SqliteStore, tmp_path: Path
) -> None:
    db.put([sample_incident()])
    acked = workflow.acknowledge(db, "inc-1", "op", T0 + 60 * S)
    assert (acked.status, acked.acknowledged_at) == ("acknowledged", T0 + 60 * S)
    assert db.incidents(status="open") == []
    db.put([sample_incident()])  # the correlator re-sends it as open: stays acknowledged
    assert db.incident("inc-1") == acked
    with pytest.raises(StoreError, match="is acknowledged"):
        workflow.acknowledge(db, "inc-1", "op", T0 + 61 * S)
    done = workflow.resolve(db, "inc-1", "op", T0 + 600 * S)
    assert (done.status, done.acknowledged_at, done.resolved_at) == (
        "resolved", T0 + 60 * S, T0 + 600 * S)
    db.close()
    again = SqliteStore.open(tmp_path / "pw.db")
    assert again.incident("inc-1") == done
    with pytest.raises(StoreError, match="no incident"):
        workflow.resolve(again, "inc-404", "op", T0)
    with pytest.raises(StoreError, match="resolved; cannot mark it resolved"):
        workflow.resolve(again, "inc-1", "op", T0 + 700 * S)
    again.put([sample_incident("inc-2")])
    with pytest.raises(StoreError, match="before its first alert"):
        workflow.acknowledge(again, "inc-2", "op", T0 - S)


def test_indicators(db: SqliteStore) -> None:
    db.put([
        sample_incident("inc-1", defended=True),
        sample_incident("inc-2", defended=False, severity="high"),
        sample_incident("inc-3", defended=None, first=T0 + 10 * S),
        sample_incident("inc-4", ("ent-b",), defended=True),
        sample_alert(0), sample_alert(1),
    ])
    workflow.acknowledge(db, "inc-1", "op", T0 + 30 * S)
    workflow.resolve(db, "inc-2", "op", T0 + 90 * S)
    got = db.indicators(enterprise="ent-a")
    assert got["incidents"] == 3 and got["alerts"] == 2
    assert (got["defended"], got["succeeded"], got["undecided"]) == (1, 1, 1)
    assert got["defended_ratio"] == 0.5
    assert got["by_severity"] == {"critical": 2, "high": 1}
    assert got["by_status"] == {"acknowledged": 1, "open": 1, "resolved": 1}
    assert got["mean_time_to_acknowledge_ns"] == 30 * S
    assert got["mean_time_to_resolve_ns"] == 90 * S
    assert db.indicators(enterprise="ent-c")["defended_ratio"] is None


def test_failed_batch_writes_nothing(db: SqliteStore) -> None:
    with pytest.raises(StoreError, match="no table"):
        db.put([sample_alert(0), object()])  # type: ignore[list-item]
    assert db.count("alerts") == 0


def test_migrations_apply_only_missing_steps_and_refuse_newer(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == len(MIGRATIONS)
    assert migrate(conn) == 0
    extra = [*MIGRATIONS, ("ALTER TABLE alerts ADD COLUMN note TEXT",)]
    assert migrate(conn, extra) == 1 and version(conn) == len(extra)
    conn.close()
    with pytest.raises(StoreError, match="newer than this ParkWatch"):
        SqliteStore.open(tmp_path / "m.db")
    bad = [*MIGRATIONS, ("CREATE TABLE alerts (x)",)]
    conn = sqlite3.connect(tmp_path / "n.db", isolation_level=None)
    with pytest.raises(StoreError, match=f"migration step {len(bad)} failed"):
        migrate(conn, bad)
    assert version(conn) == len(MIGRATIONS)


def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError) as info:
        SqliteStore.open(junk)
    assert info.value.file == str(junk)


@pytest.mark.server
def test_every_registered_store_takes_records_idempotently(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    for name, _ in STORES.items():
        if name == "sqlite":
            target, opts = str(tmp_path / "c.db"), {}
        else:
            target = request.getfixturevalue("es_url")
            opts = {"prefix": "pwcontract", "refresh": "wait_for"}
        store = open_store(str(name), target, **opts)
        try:
            recs = [sample_flow(), sample_event(), sample_alert(), sample_incident()]
            assert store.put(recs) == 4
            assert store.put(recs) == 4
            kinds = ("flows", "events", "alerts", "incidents")
            assert [store.count(k) for k in kinds] == [1, 1, 1, 1]
        finally:
            store.close()


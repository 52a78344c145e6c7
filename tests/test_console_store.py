"""The console's store layer: accounts (scrypt, sessions, tokens), triage workflow with audit
log, false positives becoming suppressions that the next replay applies, API cursors,
migration of a step-1 store, and the headless CLI equivalents."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from parkwatch.cli import cli, main
from parkwatch.errors import StoreError
from parkwatch.indicators import defended_ratio
from parkwatch.store import accounts, results, workflow
from parkwatch.store.migrations import MIGRATIONS, migrate, version
from parkwatch.store.sqlite import SqliteStore
from tests.test_store import sample_alert, sample_incident

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "replay_pcaps"


@pytest.fixture
def st(tmp_path: Path):
    s = SqliteStore.open(tmp_path / "c.db")
    yield s
    s.close()


def test_passwords_are_scrypt_salted_and_checked(st: SqliteStore) -> None:
    a, b = accounts.hash_password("correct horse"), accounts.hash_password("correct horse")
    assert a.startswith("scrypt$16384$8$1$") and a != b  # salted
    assert accounts.verify_password("correct horse", a)
    assert not accounts.verify_password("correct horsf", a)
    assert not accounts.verify_password("x", "md5$abc") and not accounts.verify_password("x", "")
    accounts.add_user(st, "op", "operator", "correct horse")
    raw = st.conn.execute("SELECT pw_hash FROM users").fetchone()[0]
    assert "correct horse" not in raw
    assert accounts.authenticate(st, "op", "correct horse") == accounts.User("op", "operator")
    assert accounts.authenticate(st, "op", "wrong pass") is None
    assert accounts.authenticate(st, "nobody", "correct horse") is None


@pytest.mark.parametrize(
    ("name", "role", "ent", "pw", "msg"),
    [
        ("bad name!", "operator", None, "longenough", "bad user name"),
        ("u", "admin", None, "longenough", "unknown role"),
        ("u", "enterprise", None, "longenough", "needs --enterprise"),
        ("u", "operator", "ent-a", "longenough", "needs --enterprise"),
        ("u", "operator", None, "short", "too short"),
    ],
)
def test_bad_users_are_refused(st, name, role, ent, pw, msg) -> None:
    with pytest.raises(StoreError, match=msg):
        accounts.add_user(st, name, role, pw, ent)
    assert accounts.users(st) == []


def test_sessions_expire_and_end_with_password_change(st: SqliteStore) -> None:
    u = accounts.add_user(st, "ea", "enterprise", "password-1", "ent-a")
    assert u.scope == "ent-a" and not u.can_triage
    sid, csrf = accounts.new_session(st, u)
    assert accounts.session(st, sid) == (u, csrf)
    assert sid not in str(st.conn.execute("SELECT * FROM sessions").fetchall())  # hash only
    old, _ = accounts.new_session(st, u, ttl_ns=-1)
    assert accounts.session(st, old) is None and accounts.session(st, "forged") is None
    accounts.set_password(st, "ea", "password-2")
    assert accounts.session(st, sid) is None
    sid2, _ = accounts.new_session(st, u)
    assert accounts.remove_user(st, "ea") and accounts.session(st, sid2) is None


def test_tokens_belong_to_one_enterprise_and_can_be_revoked(st: SqliteStore) -> None:
    tok, secret = accounts.add_token(st, "ent-a", "soc")
    assert accounts.token_enterprise(st, secret) == "ent-a"
    assert accounts.token_enterprise(st, secret + "x") is None
    assert accounts.token_enterprise(st, None) is None
    assert secret not in str(st.conn.execute("SELECT * FROM api_tokens").fetchall())
    assert accounts.revoke_token(st, tok.id) and not accounts.revoke_token(st, tok.id)
    assert accounts.token_enterprise(st, secret) is None


def test_triage_steps_are_audited_and_move_the_cursor(st: SqliteStore) -> None:
    st.put([sample_alert(0), sample_incident("inc-1"), sample_incident("inc-2")])
    accounts.add_user(st, "alice", "operator", "long password")
    accounts.add_user(st, "bob", "auditor", "long password")
    for who in ("bob", "nobody"):
        with pytest.raises(StoreError, match="is not an operator"):
            workflow.assign(st, "inc-2", "op", who)
    _, cur = results.incident_page(st, "ent-a")
    assert [i.id for i in results.incident_page(st, "ent-a", cur)[0]] == []
    workflow.acknowledge(st, "inc-1", "op")
    workflow.assign(st, "inc-1", "op", "alice")
    workflow.comment(st, "inc-1", "op", "  checked the PLC  ")
    workflow.resolve(st, "inc-1", "op", note="setpoints restored")
    page, cur2 = results.incident_page(st, "ent-a", cur)
    assert [(i.id, i.status) for i in page] == [("inc-1", "resolved")] and cur2 > cur
    assert workflow.assignee(st, "inc-1") == "alice"
    assert [c.text for c in workflow.comments(st, "inc-1")] == [
        "checked the PLC", "setpoints restored",
    ]
    log = workflow.audit_log(st, target="inc-1")
    assert [(e.actor, e.action) for e in reversed(log)] == [
        ("op", "acknowledge"), ("op", "assign"), ("op", "comment"), ("op", "resolve"),
    ]
    with pytest.raises(StoreError, match="is resolved"):
        workflow.acknowledge(st, "inc-1", "op")
    with pytest.raises(StoreError, match="no incident"):
        workflow.comment(st, "inc-x", "op", "hi")
    with pytest.raises(StoreError, match="empty"):
        workflow.comment(st, "inc-2", "op", "   ")
    assert len(workflow.audit_log(st)) == 4  # refused steps write nothing


def test_a_false_positive_closes_suppresses_and_leaves_the_ratio(st: SqliteStore) -> None:
    st.put([sample_incident("inc-1", defended=False), sample_incident("inc-2", defended=True)])
    with pytest.raises(StoreError, match="say why"):
        workflow.false_positive(st, "inc-1", "op", " ")
    inc, rules = workflow.false_positive(st, "inc-1", "op", "engineering laptop, change window")
    assert inc.status == "false_positive"
    assert rules == [{"category": "ot_unauthorized_write", "attacker": "10.1.1.5",
                      "reason": "false positive (op): engineering laptop, change window"}]
    stored = workflow.suppressions(st)
    assert [s["rule"] for s in stored] == rules and stored[0]["incident_id"] == "inc-1"
    park = defended_ratio(st.incidents())["park"]
    assert park["attacks"] == 1 and park["defended"] == 1  # the false positive is no attack
    st.put([sample_incident("inc-1")])  # the correlator re-sending it does not reopen it
    assert st.incident("inc-1").status == "false_positive"  # type: ignore[union-attr]
    assert workflow.lift_suppression(st, stored[0]["id"], "op")
    assert workflow.suppressions(st) == []


def test_a_step_one_store_migrates_with_its_incidents(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    conn.close()
    with SqliteStore.open(tmp_path / "old.db") as st1:
        st1.put([sample_incident("inc-1")])
    with SqliteStore.open(tmp_path / "old.db") as st2:
        assert version(st2.conn) == len(MIGRATIONS)
        page, cur = results.incident_page(st2, None)
        assert [i.id for i in page] == ["inc-1"] and cur >= 1


def _replay(store: Path, out: Path, *caps: str) -> list[dict]:
    res = CliRunner().invoke(cli, [
        "replay", *[str(PCAPS / c) for c in caps], "--topology", str(PCAPS / "park.yaml"),
        "--vantage", "park-gw", "--out", str(out), "--store", str(store), "--no-progress",
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return [orjson.loads(x) for x in (out / "incidents.jsonl").read_bytes().splitlines()]


def test_a_false_positive_suppresses_its_twin_on_the_next_replay(tmp_path: Path) -> None:
    db = tmp_path / "park.db"
    first = _replay(db, tmp_path / "r1", "modbus_unauthorized_write.pcap")
    target = first[0]
    with SqliteStore.open(db) as st:
        assert len(results.replays(st)) == 1 and st.count("alerts") > 0
        ev = results.events_by_uid(st, list(st.incident(target["id"]).event_uids))  # type: ignore[union-attr]
        assert {e.uid for e in ev} <= set(target["event_uids"]) and len(ev) > 0
        workflow.false_positive(st, target["id"], "op", "commissioning test")
    second = _replay(db, tmp_path / "r2", "modbus_unauthorized_write.pcap")
    twins = [i for i in second if i["category"] == target["category"]
             and set(i["attackers"]) & set(target["attackers"])]
    assert twins == [] and len(second) < len(first)
    assert {i["id"] for i in second} < {i["id"] for i in first}  # the others are raised again


def _pw(*args: str, stdin: str | None = None) -> str:
    res = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_cli_users_tokens_and_incident_triage(tmp_path: Path) -> None:
    db = tmp_path / "park.db"
    incs = _replay(db, tmp_path / "r", "dnp3_restart_and_stop.pcap")
    s = str(db)
    _pw("users", "add", "op", "--role", "operator", "--store", s, "--password-stdin",
        stdin="long password\n")
    _pw("users", "add", "alice", "--role", "operator", "--store", s, "--password-stdin",
        stdin="long password\n")
    _pw("users", "add", "eb", "--role", "enterprise", "--enterprise", "ent-b", "--store", s,
        "--password-stdin", stdin="long password\n")
    assert "eb" in _pw("users", "list", "--store", s)
    secret = _pw("tokens", "add", "--enterprise", "ent-b", "--store", s).split()[-1]
    with SqliteStore.open(db) as st:
        assert accounts.token_enterprise(st, secret) == "ent-b"
        assert accounts.authenticate(st, "op", "long password") is not None
    iid = incs[0]["id"]
    listed = _pw("incidents", "list", "--store", s, "--enterprise", "ent-b")
    assert {ln.split()[0] for ln in listed.splitlines()} == {i["id"] for i in incs}
    last = max(incs, key=lambda i: i["first_seen"])
    late = _pw("incidents", "list", "--store", s, "--since", last["last_seen"], "--format", "json")
    assert last["id"] in late and len(late.splitlines()) < len(incs)
    early = _pw("incidents", "list", "--store", s, "--until", "2000-01-01T00:00:00Z")
    assert early == ""
    _pw("incidents", "ack", iid, "--store", s, "--as", "op")
    _pw("incidents", "assign", iid, "alice", "--store", s, "--as", "op")
    _pw("incidents", "comment", iid, "PLC checked", "--store", s, "--as", "op")
    _pw("incidents", "resolve", iid, "--store", s, "--as", "op", "--note", "done")
    shown = orjson.loads(_pw("incidents", "show", iid, "--store", s, "--format", "json"))
    assert shown["incident"]["status"] == "resolved" and shown["assignee"] == "alice"
    assert [c["text"] for c in shown["comments"]] == ["PLC checked", "done"]
    assert len(shown["alerts"]) == incs[0]["alert_count"] > 0
    assert [e["action"] for e in shown["audit"]][::-1] == [
        "acknowledge", "assign", "comment", "resolve",
    ]
    out = _pw("incidents", "false-positive", incs[1]["id"], "--reason", "test rig", "--store", s)
    assert "suppression: category=" in out


def test_cli_errors_are_one_line_messages(tmp_path: Path, capsys) -> None:
    db = tmp_path / "park.db"
    with SqliteStore.open(db) as st:
        st.put([sample_incident("inc-1", defended=None)])
        workflow.resolve(st, "inc-1", "op")
    assert main(["incidents", "ack", "inc-1", "--store", str(db)]) == 2
    assert main(["incidents", "list", "--store", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "parkwatch: error: field 'status': incident 'inc-1' is resolved; cannot mark it "
        "acknowledged",
        f"parkwatch: error: no store at {tmp_path / 'none.db'} "
        "(run parkwatch replay first or fix --store)",
    ]


def test_replays_build_the_asset_inventory_in_the_store(tmp_path: Path) -> None:
    db = tmp_path / "park.db"
    _replay(db, tmp_path / "r1", "modbus_unauthorized_write.pcap")
    with SqliteStore.open(db) as st:
        first = {a["ip"]: a for a in results.assets(st)}
    plcs = [ip for ip, a in first.items() if "plc" in a["roles"]]
    assert plcs and all(first[ip]["serves"] == ["modbus"] for ip in plcs)
    assert all(a["role_evidence"] for a in first.values() if a["roles"])
    _replay(db, tmp_path / "r2", "s7comm_plc_attacks.pcap")
    with SqliteStore.open(db) as st:
        both = {a["ip"]: a for a in results.assets(st)}
        ent_a = results.assets(st, enterprise="ent-a")
    assert set(first) <= set(both) and len(both) > len(first)  # merged, nothing lost
    assert any("s7comm" in a["serves"] for a in both.values())
    assert ent_a and all(a["enterprise"] == "ent-a" for a in ent_a)


def test_the_live_correlator_shares_suppressions_assets_and_evidence(tmp_path: Path) -> None:
    from correlator.correlate_cli import StoreSync
    from correlator.incidents import Correlator
    from correlator.suppress import Suppressions
    from parkwatch.topology import load_topology
    from tests.test_store import sample_event, sample_flow

    with SqliteStore.open(tmp_path / "live.db") as st:
        st.put([sample_incident("inc-1")])
        corr = Correlator(load_topology(PCAPS / "park.yaml"))
        sync = StoreSync(st, Suppressions([]), every_s=0.0)
        assert sync.suppressions().rules == []
        workflow.false_positive(st, "inc-1", "op", "lab traffic")
        facts = [sample_flow(0), sample_event(0), sample_flow(1)]
        sync.observe(facts, corr)  # every_s=0: re-reads the store at once
        assert corr.suppress.matches(sample_alert(5))
        corr.add([sample_alert(5)])
        assert corr.incidents() == [] and corr.suppressed == 1
        citing = dataclasses.replace(
            sample_incident("inc-2"), flow_uids=("F0000", "F9999"), event_uids=("E0000",)
        )
        cited = sync.evidence([citing])
        assert sorted(r.uid for r in cited) == ["E0000", "F0000"]
        batch = [*facts, sample_event(7), sample_alert(7)]
        assert [r.uid for r in sync.facts(batch, [], "evidence")] == []
        assert [r.uid for r in sync.facts(batch, [], "all")] == ["E0000", "E0007"]
        assert sorted(r.uid for r in sync.facts(batch, [citing], "all")) == [
            "E0000", "E0000", "E0007", "F0000",  # evidence and batch events: upserted once
        ]
        assets = {a["ip"]: a for a in results.assets(st)}
        assert "plc" in assets["10.1.2.10"]["roles"] and "10.1.1.5" in assets


def test_events_named_filters_in_sqlite_as_python_would(tmp_path: Path) -> None:
    from parkwatch.schema import OtEvent

    db = tmp_path / "park.db"
    _replay(db, tmp_path / "r", "s7comm_plc_attacks.pcap", "modbus_unauthorized_write.pcap")
    want = {"s7comm": frozenset({"plc_stop", "download_block"}),
            "modbus": frozenset({"write_single_register", "write_multiple_registers"})}
    with SqliteStore.open(db) as st:
        every = st.events()
        for ent in (None, "ent-a", "ent-b"):
            got = results.events_named(st, want, ent)
            scoped = every if ent is None else st.events(enterprise=ent)
            expect = [e for e in scoped if isinstance(e, OtEvent) and e.direction == "request"
                      and e.function_name in want.get(e.protocol, ())]
            assert [e.uid for e in got] == [e.uid for e in expect]  # type: ignore[attr-defined]
        assert {e.function_name for e in results.events_named(st, want)} >= {  # type: ignore[attr-defined]
            "plc_stop", "write_single_register"}
        assert results.events_named(st, {}) == []

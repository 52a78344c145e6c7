"""``parkwatch serve``, ``users``, ``tokens`` and ``incidents``: the console and its headless
equivalents. Triage from the command line goes through the same workflow functions as the
console and lands in the same audit log (actor ``--as``, default ``cli:<login name>``)."""

from __future__ import annotations

import getpass
import os
import sys
from typing import Any

import click
import orjson

from parkwatch.durations import parse_time_option
from parkwatch.errors import ConfigError
from parkwatch.schema import Incident, format_ts
from parkwatch.store import accounts, results, workflow
from parkwatch.store.sqlite import SqliteStore

STORE = click.option(
    "--store", "store_path", type=click.Path(dir_okay=False), required=True,
    envvar="PARKWATCH_STORE", help="SQLite store (parkwatch replay writes OUT/parkwatch.db).",
)
STATUSES = ("open", "acknowledged", "resolved", "false_positive")


def _open(path: str, must_exist: bool = True) -> SqliteStore:
    if must_exist and not os.path.exists(path):
        raise ConfigError(f"no store at {path}", hint="run parkwatch replay first or fix --store")
    return SqliteStore.open(path)


@click.command("serve")
@STORE
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8400, show_default=True, type=int)
@click.option(
    "--insecure-cookies", is_flag=True,
    help="Send the session cookie over plain HTTP (development only; serve behind TLS).",
)
def serve_command(store_path: str, host: str, port: int, insecure_cookies: bool) -> None:
    """Run the park security console and the enterprise API."""
    import uvicorn

    from parkwatch.console.app import create_app

    app = create_app(store_path, secure_cookies=not insecure_cookies)
    click.echo(f"parkwatch console on http://{host}:{port}/ (store {store_path})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)


@click.group("users")
def users_command() -> None:
    """Console users: add, list, remove, passwd."""


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(click.prompt("password", hide_input=True, confirmation_prompt=True))


@users_command.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(accounts.ROLES), required=True)
@click.option("--enterprise", default=None, help="The enterprise an enterprise user sees.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@STORE
def _users_add(
    name: str, role: str, enterprise: str | None, password_stdin: bool, store_path: str
) -> None:
    with _open(store_path, must_exist=False) as st:
        u = accounts.add_user(st, name, role, _password(password_stdin), enterprise)
        workflow.audit(st, _actor(None), "user_add", u.name, role=role, enterprise=enterprise)
    click.echo(f"user {u.name} added ({u.role}{': ' + u.enterprise if u.enterprise else ''})")


@users_command.command("list")
@STORE
def _users_list(store_path: str) -> None:
    with _open(store_path) as st:
        for u in accounts.users(st):
            click.echo(f"{u.name:24} {u.role:10} {u.enterprise or ''}")


@users_command.command("remove")
@click.argument("name")
@STORE
def _users_remove(name: str, store_path: str) -> None:
    with _open(store_path) as st:
        if not accounts.remove_user(st, name):
            raise ConfigError(f"no user {name!r}", hint="parkwatch users list shows them")
        workflow.audit(st, _actor(None), "user_remove", name)
    click.echo(f"user {name} removed")


@users_command.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True)
@STORE
def _users_passwd(name: str, password_stdin: bool, store_path: str) -> None:
    with _open(store_path) as st:
        accounts.set_password(st, name, _password(password_stdin))
        workflow.audit(st, _actor(None), "user_passwd", name)
    click.echo(f"password of {name} changed; its sessions ended")


@click.group("tokens")
def tokens_command() -> None:
    """Enterprise API tokens: add, list, revoke."""


@tokens_command.command("add")
@click.option("--enterprise", required=True)
@click.option("--label", default="", help="Who holds it (e.g. the enterprise's SOC platform).")
@STORE
def _tokens_add(enterprise: str, label: str, store_path: str) -> None:
    """Create a token; the secret is printed once (only its hash is stored)."""
    with _open(store_path, must_exist=False) as st:
        tok, secret = accounts.add_token(st, enterprise, label)
        workflow.audit(st, _actor(None), "token_add", tok.id, enterprise=enterprise)
    click.echo(f"{tok.id} for {enterprise}: ", err=True, nl=False)
    click.echo(secret)


@tokens_command.command("list")
@STORE
def _tokens_list(store_path: str) -> None:
    with _open(store_path) as st:
        for t in accounts.tokens(st):
            state = f"revoked {format_ts(t.revoked_ns)}" if t.revoked_ns else "live"
            click.echo(f"{t.id}  {t.enterprise:12} {state:34} {t.label}")


@tokens_command.command("revoke")
@click.argument("token_id")
@STORE
def _tokens_revoke(token_id: str, store_path: str) -> None:
    with _open(store_path) as st:
        if not accounts.revoke_token(st, token_id):
            raise ConfigError(f"no live token {token_id!r}", hint="parkwatch tokens list")
        workflow.audit(st, _actor(None), "token_revoke", token_id)
    click.echo(f"{token_id} revoked")


def _actor(who: str | None) -> str:
    return who or f"cli:{getpass.getuser()}"


@click.group("incidents")
def incidents_command() -> None:
    """Triage stored incidents: list, show, ack, assign, comment, resolve, false-positive."""


ACTOR = click.option("--as", "actor", default=None, help="Who acts (default cli:<login>).")
AT = click.option("--at", default=None, help="RFC 3339 time (default: now).")


def _line(i: Incident) -> str:
    return (
        f"{i.id}  {format_ts(i.first_seen)}  {i.severity:8} {i.category:24} {i.status:14} "
        f"{','.join(i.enterprises):12} {','.join(i.attackers[:2])} -> {','.join(i.targets[:2])}"
    )


@incidents_command.command("list")
@STORE
@click.option("--status", default=None, type=click.Choice(STATUSES))
@click.option("--enterprise", default=None)
@click.option("--severity", default=None)
@click.option("--category", default=None)
@click.option("--since", default=None, help="RFC 3339: incidents still active after this.")
@click.option("--until", default=None, help="RFC 3339: incidents begun before this.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def _list(
    store_path: str, status: str | None, enterprise: str | None, severity: str | None,
    category: str | None, since: str | None, until: str | None, fmt: str,
) -> None:
    """Incidents by first alert, as the console's queue filters them."""
    lo, hi = parse_time_option(since, "--since"), parse_time_option(until, "--until")
    with _open(store_path) as st:
        incs = st.incidents(lo, hi, enterprise=enterprise, status=status)
    for i in incs:
        if (severity and i.severity != severity) or (category and i.category != category):
            continue
        click.echo(i.to_json().decode() if fmt == "json" else _line(i))


@incidents_command.command("show")
@click.argument("incident_id")
@STORE
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def _show(incident_id: str, store_path: str, fmt: str) -> None:
    """An incident with its alerts, evidence, comments and audit trail."""
    with _open(store_path) as st:
        inc = st.incident(incident_id)
        if inc is None:
            raise ConfigError(f"no incident {incident_id!r}", hint="parkwatch incidents list")
        doc: dict[str, Any] = {
            "incident": orjson.loads(inc.to_json()),
            "assignee": workflow.assignee(st, inc.id),
            "campaign": results.campaign(st, inc.campaign) if inc.campaign else None,
            "alerts": [orjson.loads(a.to_json()) for a in st.alerts(incident_id=inc.id)],
            "events": [orjson.loads(e.to_json())
                       for e in results.events_by_uid(st, list(inc.event_uids))],
            "comments": [c.__dict__ for c in workflow.comments(st, inc.id)],
            "audit": [e.__dict__ for e in workflow.audit_log(st, target=inc.id)],
        }
    if fmt == "json":
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(_line(inc))
    click.echo(f"  {inc.title}\n  verdict: {inc.defended} ({inc.defended_evidence})")
    click.echo(f"  techniques: {', '.join(inc.techniques)}; assignee: {doc['assignee']}")
    if doc["campaign"]:
        click.echo(f"  campaign {inc.campaign}: {doc['campaign']['recommendation']}")
    for a in doc["alerts"]:
        click.echo(f"  alert {a['ts']} {a['rule_id']} {a['title']}")
    for e in doc["events"]:
        click.echo(f"  event {e['ts']} {e.get('protocol')} {e.get('function_name')} "
                   f"{e.get('src_ip')} -> {e.get('dst_ip')}")
    for c in doc["comments"]:
        click.echo(f"  comment {format_ts(c['ts_ns'])} {c['author']}: {c['text']}")


def _done(inc: Incident) -> None:
    click.echo(f"{inc.id}: {inc.status}")


@incidents_command.command("ack")
@click.argument("incident_id")
@STORE
@ACTOR
@AT
def _ack(incident_id: str, store_path: str, actor: str | None, at: str | None) -> None:
    with _open(store_path) as st:
        _done(workflow.acknowledge(st, incident_id, _actor(actor), parse_time_option(at, "--at")))


@incidents_command.command("resolve")
@click.argument("incident_id")
@STORE
@ACTOR
@AT
@click.option("--note", default="", help="Resolution note (kept as a comment).")
def _resolve(
    incident_id: str, store_path: str, actor: str | None, at: str | None, note: str
) -> None:
    with _open(store_path) as st:
        _done(workflow.resolve(st, incident_id, _actor(actor), parse_time_option(at, "--at"), note))


@incidents_command.command("assign")
@click.argument("incident_id")
@click.argument("assignee")
@STORE
@ACTOR
def _assign(incident_id: str, assignee: str, store_path: str, actor: str | None) -> None:
    with _open(store_path) as st:
        workflow.assign(st, incident_id, _actor(actor), assignee)
    click.echo(f"{incident_id}: assigned to {assignee}")


@incidents_command.command("comment")
@click.argument("incident_id")
@click.argument("text")
@STORE
@ACTOR
def _comment(incident_id: str, text: str, store_path: str, actor: str | None) -> None:
    with _open(store_path) as st:
        workflow.comment(st, incident_id, _actor(actor), text)
    click.echo(f"{incident_id}: comment added")


@incidents_command.command("false-positive")
@click.argument("incident_id")
@click.option("--reason", required=True)
@STORE
@ACTOR
def _false_positive(incident_id: str, reason: str, store_path: str, actor: str | None) -> None:
    """Close as a false positive; later replays into this store suppress its twins."""
    with _open(store_path) as st:
        inc, rules = workflow.false_positive(st, incident_id, _actor(actor), reason)
    _done(inc)
    for r in rules:
        click.echo(f"  suppression: {', '.join(f'{k}={v}' for k, v in r.items() if k != 'reason')}")

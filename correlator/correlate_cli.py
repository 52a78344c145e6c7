"""``parkwatch correlate``: the correlator as a consumer group on the transport.

Consumes alerts (and flows/events, the evidence of defended verdicts), keeps incidents up to
date and publishes each incident whenever it changes (same id: consumers and stores upsert),
to the incidents topic, the SQLite store, optionally Elasticsearch, and each enterprise's
feed. Incidents are recomputed from the alerts so far, so the grouping does not depend on how
the input was split into batches or ordered across partitions; an incident that later alerts
regrouped is removed from the store (:class:`LiveCorrelator`). Alerts older than ``--keep``
behind the newest are dropped from memory (their incidents stay in the store).
"""

from __future__ import annotations

import signal
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import click
import yaml

from correlator.incidents import Correlator
from correlator.suppress import Suppressions
from parkwatch.assets import AssetBook
from parkwatch.config import load_settings
from parkwatch.durations import parse_duration
from parkwatch.errors import ConfigError
from parkwatch.schema import Alert, FlowRecord, Incident, Record
from parkwatch.store import results, workflow
from parkwatch.store.sqlite import SqliteStore
from parkwatch.topology import load_topology
from parkwatch.transport.base import open_transport
from parkwatch.transport.worker import run_stage


class StoreSync:
    """What the live correlator shares with the console through the store: operators' false
    positives (re-read every ``every_s``, so a suppression made in the console applies within
    that time), the passive asset inventory (written back as often) and the evidence: the
    flows and events a changed incident cites, from the last ``keep_facts`` facts seen."""

    def __init__(
        self, store: SqliteStore, from_file: Suppressions, every_s: float = 30.0,
        keep_facts: int = 50_000,
    ) -> None:
        self.store = store
        self.recent: OrderedDict[str, Record] = OrderedDict()
        self.keep_facts = keep_facts
        self.from_file = from_file
        self.every = every_s
        self.last = time.monotonic()
        self.book = AssetBook()
        for known in results.assets(store):
            self.book.merge(known)

    def suppressions(self) -> Suppressions:
        stored = [s["rule"] for s in workflow.suppressions(self.store)]
        return self.from_file + Suppressions.parse(stored, f"{self.store.path} (false positives)")

    def observe(self, records: list[Record], corr: Correlator) -> None:
        for r in records:
            self.book.observe(r)
            uid = getattr(r, "uid", None)
            if uid and not isinstance(r, Alert):
                self.recent[uid] = r
                if len(self.recent) > self.keep_facts:
                    self.recent.popitem(last=False)
        if time.monotonic() - self.last >= self.every:
            corr.suppress = self.suppressions()
            self.flush()

    def evidence(self, incidents: list[Incident]) -> list[Record]:
        """The cited facts still in memory (the store upserts, so resending is harmless)."""
        uids = {u for i in incidents for u in (*i.flow_uids, *i.event_uids)}
        return [self.recent[u] for u in sorted(uids) if u in self.recent]

    def facts(
        self, records: list[Record], changed: list[Incident], events: str
    ) -> list[Record]:
        """Facts to store with this batch: the evidence of changed incidents, and with
        ``events == "all"`` every event of the batch (the enterprise ``/events`` feed)."""
        out = self.evidence(changed)
        if events == "all":
            out += [r for r in records if not isinstance(r, (Alert, FlowRecord))]
        return out

    def flush(self) -> None:
        self.last = time.monotonic()
        results.put_assets(self.store, [a.to_dict() for a in self.book.assets()])


class LiveCorrelator:
    """Batches in; the batch's alerts, the changed incidents and the ids of superseded ones out.

    An incident is *superseded* when alerts that arrived later regrouped its alerts (an earlier
    alert of the same attack arrived late, so the group's first alert and with it the id
    changed; or an anomaly alert that stood alone now corroborates an incident). Its alerts are
    then part of the incidents sent in its place, so it must be withdrawn, or the store would
    count that attack twice. An incident with alerts dropped from memory (``keep``) is not
    superseded: it stays as sent.
    """

    def __init__(self, corr: Correlator, keep_ns: int) -> None:
        self.corr = corr
        self.keep = keep_ns
        self.sent: dict[str, bytes] = {}
        self.alerts_of: dict[str, tuple[str, ...]] = {}  # sent incident id -> its alert uids
        self.newest = 0

    def process(self, records: list[Record]) -> tuple[list[Alert], list[Incident], list[str]]:
        alerts = [r for r in records if isinstance(r, Alert)]
        for r in records:
            if not isinstance(r, Alert):
                self.corr.observe(r)
        self.corr.add(alerts)
        if alerts:
            self.newest = max(self.newest, max(a.ts for a in alerts))
            self.corr.forget_before(self.newest - self.keep)
        _camps, incs = self.corr.campaigns(self.corr.incidents())
        changed = []
        for inc in incs:
            blob = inc.to_json()
            if self.sent.get(inc.id) != blob:
                self.sent[inc.id] = blob
                self.alerts_of[inc.id] = inc.alert_uids
                changed.append(inc)
        now = {i.id for i in incs}
        held = {a.uid for a in self.corr.pending()}
        gone = sorted(
            i for i, uids in self.alerts_of.items() if i not in now and held.issuperset(uids)
        )
        for i in gone:
            del self.sent[i], self.alerts_of[i]
        return alerts, changed, gone


def _feeds(path: str | None, transport: Any, store: SqliteStore) -> Any:
    if path is None:
        return None
    from parkwatch.feeds import Feeds, load_feed_settings

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read feed settings: {exc}", file=path) from exc
    # a shared incident goes to each enterprise as its cut, from the alerts stored just before
    return Feeds(load_feed_settings(data), transport,
                 alerts_of=lambda iid: store.alerts(incident_id=iid))  # fmt: skip


@click.command("correlate")
@click.option("--from", "url", required=True, help="Transport: kafka://HOST:PORT or memory://.")
@click.option("--group", default="parkwatch-correlate", show_default=True)
@click.option("--topology", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--store", "store_path", type=click.Path(dir_okay=False), default="parkwatch.db",
              show_default=True, help="SQLite store for alerts and incidents.")  # fmt: skip
@click.option("--es", "es_url", default=None, help="Also index alerts and incidents here.")
@click.option("--feeds", "feeds_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Per-enterprise feed settings (YAML, see docs/OUTPUTS.md).")  # fmt: skip
@click.option("--suppress", type=click.Path(dir_okay=False, exists=True), default=None)
@click.option("--window", default="30m", show_default=True, help="Incident grouping window.")
@click.option("--keep", default="24h", show_default=True, help="Alerts kept in memory.")
@click.option("--store-events", "store_events", type=click.Choice(["evidence", "all"]),
              default="evidence", show_default=True,
              help="Store only the events incidents cite, or every event (grows the store).")
@click.option("--idle-exit", type=float, default=None, help="Stop after SECONDS without input.")
@click.option("--config", type=click.Path(dir_okay=False), default=None)
def correlate_command(
    url: str,
    group: str,
    topology: str | None,
    store_path: str,
    es_url: str | None,
    feeds_path: str | None,
    suppress: str | None,
    window: str,
    keep: str,
    store_events: str,
    idle_exit: float | None,
    config: str | None,
) -> None:
    """Consume alerts (and facts), publish incidents, fill the store and the feeds."""
    settings = load_settings(config, topology=Path(topology) if topology else None)
    topo = load_topology(settings.topology)
    ts = settings.transport
    from_file = Suppressions.load(suppress)
    store = SqliteStore.open(store_path)
    sync = StoreSync(store, from_file)
    live = LiveCorrelator(
        Correlator(topo, parse_duration(window), sync.suppressions()), parse_duration(keep)
    )
    transport = open_transport(url, ts)
    feeds = _feeds(feeds_path, transport, store)
    es = None
    if es_url:
        from parkwatch.elastic import ElasticSink

        es = ElasticSink.open(es_url)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def process(records: list[Record]) -> list[tuple[str, Record]]:
        sync.observe(records, live.corr)
        alerts, changed, gone = live.process(records)
        # durable before the input is committed
        store.put([*sync.facts(records, changed, store_events), *alerts, *changed])
        store.remove_incidents(gone)  # regrouped into the changed ones
        if es is not None:
            es.put([*alerts, *changed])
            es.remove("incidents", gone)
        if feeds is not None:
            feeds.publish([*alerts, *changed])
        return [(ts.topics.incidents, i) for i in changed]

    topics = [ts.topics.alerts, ts.topics.flows, ts.topics.events]
    try:
        st = run_stage(transport, topics, group, process, stop=stop, idle_exit=idle_exit)
    finally:
        sync.flush()
        if feeds is not None:
            feeds.flush()
        if es is not None:
            es.close()
        store.close()
        transport.close()
    click.echo(
        f"parkwatch correlate: {st.records:,} records, {len(live.sent):,} incidents, "
        f"{st.published:,} incident updates published, {st.duplicates:,} duplicates dropped",
        err=True,
    )

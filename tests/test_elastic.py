"""Elasticsearch sink against a real ES-API server (noida-db) and local HTTP fakes."""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from parkwatch.elastic import ElasticSink, make_client
from parkwatch.elastic_templates import KINDS, document, mappings
from parkwatch.errors import StoreError
from parkwatch.schema import Alert, ArpEvent, Incident, OtEvent, Weird
from tests.servers_es import es_url  # noqa: F401
from tests.test_store import sample_alert, sample_event, sample_flow, sample_incident

pytestmark = pytest.mark.server
_counter = iter(range(10_000))


@pytest.fixture
def sink(es_url: str) -> Iterator[ElasticSink]:  # noqa: F811
    s = ElasticSink.open(es_url, prefix=f"pwtest{next(_counter)}", refresh="wait_for")
    yield s
    s.close()


def test_templates_and_write_aliases_are_created(sink: ElasticSink) -> None:
    sink.setup()
    for kind in KINDS:
        alias = sink.alias(kind)
        got = sink.client.indices.get_alias(name=alias)
        assert got.body == {f"{alias}-000001": {"aliases": {alias: {"is_write_index": True}}}}
        tmpl = sink.client.indices.get_index_template(name=alias)["index_templates"][0]
        assert tmpl["index_template"]["index_patterns"] == [f"{alias}-*"]
        props = sink.client.indices.get_mapping(index=f"{alias}-000001")
        m = props[f"{alias}-000001"]["mappings"]
        assert m["dynamic"] == "strict"
        assert m["properties"] == mappings(kind)["properties"]
    flows = sink.client.indices.get_mapping(index=sink.alias("flows") + "-000001")
    src = next(iter(flows.values()))["mappings"]["properties"]["source"]["properties"]
    assert src["ip"]["type"] == "ip" and src["port"]["type"] == "long"
    sink.setup()  # idempotent: a second setup keeps the index and alias


def test_records_are_indexed_with_ecs_names_and_queried_by_term_and_range(
    sink: ElasticSink,
) -> None:
    flow, event, alert, inc = sample_flow(), sample_event(), sample_alert(), sample_incident()
    assert sink.put([flow, event, alert, inc]) == 4
    hits = sink.search("flows", {"term": {"source.ip": "10.1.1.5"}})
    assert len(hits) == 1
    doc = hits[0]
    assert doc["destination"]["port"] == 502 and doc["network"]["iana_number"] == 6
    assert doc["event"]["id"] == flow.uid and doc["parkwatch"]["schema"] == flow.schema_id()
    assert doc["@timestamp"] == doc["event"]["start"]
    assert sink.search("flows", {"term": {"source.ip": "10.1.1.6"}}) == []
    ev = sink.search("events", {"term": {"ics.function_code": 6}})
    assert len(ev) == 1 and ev[0]["ics"]["attrs"]["register_name"] == "setpoint"
    assert ev[0]["ics"]["values"] == [1500]
    alerts = sink.search("alerts", {"term": {"organization.id": "ent-a"}})
    assert [a["event"]["id"] for a in alerts] == [alert.uid]
    assert alerts[0]["parkwatch"]["evidence"] == {"function_code": 6, "src_zone": "it"}
    assert alerts[0]["source"]["ip"] == ["10.1.1.5"]
    window = {"range": {"event.start": {"gte": "2024-05-01T10:00:00Z", "lt": "2024-05-01T11:00Z"}}}
    assert [i["event"]["id"] for i in sink.search("incidents", window)] == [inc.id]
    late = {"range": {"event.start": {"gte": "2024-05-01T10:00:06Z"}}}
    assert sink.search("incidents", late) == []


def test_resending_does_not_duplicate(sink: ElasticSink) -> None:
    alerts = [sample_alert(i) for i in range(5)]
    sink.put(alerts)
    sink.put(alerts)
    changed = sample_alert(0)
    changed.title = "changed"
    sink.put([changed])
    assert sink.count("alerts") == 5
    hit = sink.search("alerts", {"term": {"event.id": changed.uid}})
    assert hit[0]["rule"]["name"] == "changed"


def test_arp_and_weird_events_share_the_events_index(sink: ElasticSink) -> None:
    arp = ArpEvent(ts=1, op="is-at", sender_mac="02:00:00:00:00:09", sender_ip="10.1.1.9",
                   target_mac="02:00:00:00:00:01", target_ip="10.1.1.1")
    weird = Weird(ts=2, name="truncated_ipv4_header", layer="ip", detail="12 < 20", frame=4)
    assert sink.put([arp, weird, arp]) == 3
    assert sink.count("events") == 2  # the same ARP event twice is one document
    assert len(sink.search("events", {"term": {"parkwatch.sender_ip": "10.1.1.9"}})) == 1


def test_a_non_ip_in_an_ip_field_is_a_store_error_naming_index_and_field(
    sink: ElasticSink,
) -> None:
    good = sample_alert(1)
    bad = sample_alert(2)
    bad.attackers = ("not-an-ip",)
    with pytest.raises(StoreError) as info:
        sink.put([good, bad])
    err = info.value
    assert err.field == "source.ip"
    assert sink.alias("alerts") in str(err) and bad.uid in str(err)
    assert sink.stats.rejected == 1
    assert sink.count("alerts") == 1  # the good one of the chunk is written


def test_an_unknown_attr_type_conflict_names_the_field(sink: ElasticSink) -> None:
    ev = sample_event()
    ev.attrs = {"status": "not-a-number"}  # ECS http.response.status_code is long
    with pytest.raises(StoreError) as info:
        sink.put([ev])
    assert info.value.field == "http.response.status_code"


class FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the real server; the first ``fail`` bulk calls get 503, then one call gets
    per-item 429 for every document."""

    upstream = ""
    plan: ClassVar[list[str]] = []
    seen: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        is_bulk = self.path.startswith("/_bulk")
        step = self.plan.pop(0) if is_bulk and self.plan else "pass"
        self.seen.append(f"{self.command} {self.path.split('?')[0]} {step}")
        if step == "503":
            return self._send(503, {"error": {"type": "unavailable"}, "status": 503})
        if step == "429-items":
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            items = [{"index": {"_index": a["index"]["_index"], "_id": a["index"]["_id"],
                                "status": 429, "error": {"type": "es_rejected_execution"}}}
                     for a in lines[::2]]
            return self._send(200, {"took": 1, "errors": True, "items": items})
        req = urllib.request.Request(self.upstream + self.path, data=body or None,
                                     method=self.command, headers=dict(self.headers))
        try:
            with urllib.request.urlopen(req) as resp:
                self._send(resp.status, resp.read(), raw=True)
        except urllib.error.HTTPError as exc:
            self._send(exc.code, exc.read(), raw=True)

    def _send(self, status: int, payload: Any, raw: bool = False) -> None:
        data = payload if raw else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@pytest.fixture
def proxy(es_url: str) -> Iterator[str]:  # noqa: F811
    FlakyProxy.upstream = es_url
    FlakyProxy.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyProxy)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_bulk_retries_5xx_and_item_429_with_exponential_backoff(proxy: str) -> None:
    FlakyProxy.plan = ["503", "503", "429-items"]
    sleeps: list[float] = []
    sink = ElasticSink.open(proxy, prefix=f"pwtest{next(_counter)}", refresh="wait_for",
                            sleep=sleeps.append, initial_backoff=0.25)
    alerts = [sample_alert(i) for i in range(3)]
    assert sink.put(alerts) == 3
    assert sleeps == [0.25, 0.5, 1.0]
    assert [s for s in FlakyProxy.seen if "/_bulk" in s] == [
        "PUT /_bulk 503", "PUT /_bulk 503", "PUT /_bulk 429-items", "PUT /_bulk pass"]
    assert sink.count("alerts") == 3 and sink.stats.retries == 3


def test_retries_give_up_with_a_store_error(proxy: str) -> None:
    FlakyProxy.plan = ["503"] * 10
    sleeps: list[float] = []
    sink = ElasticSink.open(proxy, prefix=f"pwtest{next(_counter)}", sleep=sleeps.append,
                            max_retries=3, initial_backoff=1.0, max_backoff=3.0)
    with pytest.raises(StoreError, match="503"):
        sink.put([sample_alert()])
    assert sleeps == [1.0, 2.0, 3.0]


def test_unreachable_cluster_is_a_store_error_after_retries() -> None:
    from tests.servers_es import free_port

    sleeps: list[float] = []
    sink = ElasticSink.open(f"http://127.0.0.1:{free_port()}", sleep=sleeps.append,
                            max_retries=2)
    with pytest.raises(StoreError, match=r"unreachable.*3 tries"):
        sink.put([sample_alert()])
    assert len(sleeps) == 2


class Es8Header(http.server.BaseHTTPRequestHandler):
    """Answers like Elasticsearch 8.x does to the media-type versions it accepts (7 or 8)."""

    accepts: ClassVar[list[str]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        accept = self.headers.get("Accept", "")
        self.accepts.append(accept)
        if "compatible-with=" in accept and not any(
            f"compatible-with={v}" in accept for v in (7, 8)
        ):
            status, body = 400, {"error": {"type": "media_type_header_exception",
                                           "reason": "Accept version must be either version 8 "
                                                     f"or 7, but found 9. Accept={accept}"},
                                 "status": 400}
        else:
            status, body = 200, {"name": "es8", "cluster_name": "c", "tagline": "You Know, for "
                                 "Search", "version": {"number": "8.15.0"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_the_client_asks_for_the_es8_rest_api_so_es8_accepts_it() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Es8Header)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert make_client(url).info()["version"]["number"] == "8.15.0"
        assert "compatible-with=8" in Es8Header.accepts[-1]
        import elasticsearch

        if elasticsearch.__version__[0] >= 9:  # without the rewrite an ES 8 server refuses
            with pytest.raises(elasticsearch.BadRequestError):
                make_client(url, api_compat=None).info()
    finally:
        srv.shutdown()
        srv.server_close()


def test_documents_nest_ecs_names() -> None:
    doc = document(sample_flow())
    assert doc["source"]["ip"] == "10.1.1.5" and doc["zeek"]["connection"]["state"] == "SF"
    ev = document(sample_event())
    assert ev["network"]["protocol"] == "modbus" and ev["ics"]["data_area"] == "holding_register"
    assert isinstance(sample_alert(), Alert) and isinstance(sample_incident(), Incident)
    assert isinstance(sample_event(), OtEvent)
    dns = sample_event()
    dns.attrs = {"query": "plc.example", "answers": 2, "nested": {"a": [1, {"b": 2}]}}
    d = document(dns)
    assert d["dns"]["question"]["name"] == "plc.example" and d["dns"]["answers_count"] == 2
    assert d["ics"]["attrs"]["nested"]["a"] == [1, '{"b":2}']


def test_superseded_incidents_are_removed(sink: ElasticSink) -> None:
    a, b = sample_incident(), dataclasses.replace(sample_incident(), id="inc-other")
    sink.put([a, b])
    assert sink.count("incidents") == 2
    assert sink.remove("incidents", [a.id, "inc-never-indexed"]) == 1
    assert sink.count("incidents") == 1
    assert [d["event"]["id"] for d in sink.search("incidents", {"match_all": {}})] == [b.id]

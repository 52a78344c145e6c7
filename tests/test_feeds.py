"""Per-enterprise feeds: routing, tenant isolation, signed webhooks, retries, dead letters."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from parkwatch.errors import ConfigError, TransportError
from parkwatch.feeds import Feeds, FeedSettings, load_feed_settings, sign, verify_signature
from parkwatch.schema import Alert, Incident
from parkwatch.transport import decode_message, open_transport, record_id
from tests.test_store import sample_alert, sample_event, sample_incident

SECRET_A = "a-secret-for-ent-a-0001"
SECRET_B = "b-secret-for-ent-b-0002"
NOW = 1_714_557_700


@dataclass
class Got:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    got: list[Got] = field(default_factory=list)
    plan: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [orjson.loads(g.body) for g in self.got if g.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.got.append(Got(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            statuses = rec.plan.get(self.path, [])
            status = statuses.pop(0) if statuses else 200
            self.send_response(status)
            if status == 302:
                self.send_header("Location", "/stolen")
            self.send_header("Content-Length", "0")
            self.end_headers()

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    rec.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield rec
    srv.shutdown()
    srv.server_close()


def make(receiver: Receiver, transport: Any = None, **extra: Any) -> tuple[Feeds, list[float]]:
    conf = {
        "enterprises": {
            "ent-a": {"webhook": receiver.url + "/a", "secret": SECRET_A},
            "ent-b": {"webhook": receiver.url + "/b", "secret": SECRET_B},
        },
        "initial_backoff": 0.5,
        **extra,
    }
    sleeps: list[float] = []
    return Feeds(load_feed_settings(conf), transport, sleep=sleeps.append,
                 clock=lambda: NOW), sleeps


def ids(bodies: list[dict[str, Any]]) -> list[str]:
    return [r.get("uid") or r.get("id") for b in bodies for r in b["records"]]


def test_each_enterprise_gets_only_its_records_on_topic_and_webhook(receiver: Receiver) -> None:
    transport = open_transport("memory://feeds-routing")
    feeds, _ = make(receiver, transport)
    recs = [
        sample_alert(1, ("ent-a",)), sample_alert(2, ("ent-b",)),
        sample_alert(3, ("ent-a", "ent-b")), sample_alert(4, ()),
        sample_incident("inc-a", ("ent-a",)), sample_event(),
    ]
    assert feeds.publish(recs) == 2 * 5  # (A1, A3, inc-a) + (A2, A3) on both channels
    assert ids(receiver.bodies("/a")) == ["A0001", "A0003", "inc-a"]
    assert ids(receiver.bodies("/b")) == ["A0002", "A0003"]
    for path, ent in (("/a", "ent-a"), ("/b", "ent-b")):
        assert {b["enterprise"] for b in receiver.bodies(path)} == {ent}
    assert feeds.stats.no_enterprise == 1 and feeds.stats.not_a_feed_record == 1
    got: dict[str, list[str]] = {}
    for ent in ("ent-a", "ent-b"):
        consumer = transport.subscribe([f"parkwatch.feed.{ent}"], f"g-{ent}")
        msgs = consumer.poll(timeout=0.1, max_records=100)
        assert {m.headers["enterprise"] for m in msgs} == {ent.encode()}
        got[ent] = sorted(record_id(decode_message(m)) for m in msgs)
    assert got == {"ent-a": ["A0001", "A0003", "inc-a"], "ent-b": ["A0002", "A0003"]}
    assert isinstance(decode_message(msgs[0]), Alert | Incident)


def test_crafted_enterprise_lists_and_unknown_ids_reach_no_other_tenant(
    receiver: Receiver,
) -> None:
    transport = open_transport("memory://feeds-crafted")
    feeds, _ = make(receiver, transport)
    crafted = ("ent-a",)  # belongs to ent-a; variants of ent-b must not reach ent-b
    lookalikes = ("ent-b ", "ENT-B", "ent-b\x00", "ent-*", "ent-a,ent-b", "../ent-b",
                  "parkwatch.feed.ent-b", "", "ent-c")
    recs = [sample_alert(i, (*crafted, look)) for i, look in enumerate(lookalikes)]
    recs.append(sample_alert(99, ("ent-a", "ent-a", "ent-a")))
    feeds.publish(recs)
    assert receiver.bodies("/b") == []
    assert transport.subscribe(["parkwatch.feed.ent-b"], "spy").poll(0.1, 100) == []
    assert ids(receiver.bodies("/a")) == [r.uid for r in recs]  # the duplicate list: once
    assert sum(feeds.stats.unknown_enterprise.values()) == len(lookalikes)
    # topics are taken from the configuration, never from the record
    assert not any(t for t in ("parkwatch.feed.ent-b ", "parkwatch.feed.ENT-B")
                   if transport.subscribe([t], "spy2").poll(0.05, 10))


def test_two_tenants_on_one_url_are_told_apart_by_their_secrets(receiver: Receiver) -> None:
    conf = {"enterprises": {
        "ent-a": {"webhook": receiver.url + "/shared", "secret": SECRET_A},
        "ent-b": {"webhook": receiver.url + "/shared", "secret": SECRET_B},
    }}
    feeds = Feeds(load_feed_settings(conf), clock=lambda: NOW)
    feeds.publish([sample_alert(1, ("ent-a",)), sample_alert(2, ("ent-b",))])
    assert len(receiver.got) == 2
    for g in receiver.got:
        body = orjson.loads(g.body)
        ok_a = verify_signature(g.body, g.headers, SECRET_A, now=NOW)
        ok_b = verify_signature(g.body, g.headers, SECRET_B, now=NOW)
        assert (ok_a, ok_b) == ((True, False) if body["enterprise"] == "ent-a" else (False, True))
        assert len(body["records"]) == 1 and body["records"][0]["enterprises"] == [
            body["enterprise"]]
    # a post for ent-b re-labelled as ent-a fails ent-a's check (the enterprise is signed)
    post_b = next(g for g in receiver.got if orjson.loads(g.body)["enterprise"] == "ent-b")
    forged = post_b.body.replace(b'"ent-b"', b'"ent-a"')
    assert not verify_signature(forged, post_b.headers, SECRET_A, now=NOW)
    assert not verify_signature(forged, post_b.headers, SECRET_B, now=NOW)


def test_configs_that_would_mix_tenants_are_refused() -> None:
    with pytest.raises(ConfigError, match="share a webhook secret"):
        load_feed_settings({"enterprises": {
            "ent-a": {"webhook": "http://x/h", "secret": SECRET_A},
            "ent-b": {"webhook": "http://x/h", "secret": SECRET_A}}})
    with pytest.raises(ConfigError, match="share topic"):
        load_feed_settings({"enterprises": {"ent-a": {"topic": "t"}, "ent-b": {"topic": "t"}}})
    with pytest.raises(ConfigError, match="share topic"):
        load_feed_settings({"enterprises": {"ent-a": {"topic": "parkwatch.feed.ent-b"},
                                            "ent-b": {}}})
    with pytest.raises(ConfigError, match="must match"):
        load_feed_settings({"enterprises": {"ent a/..": {}}})
    with pytest.raises(ConfigError, match="needs a secret") as info:
        load_feed_settings({"enterprises": {"ent-a": {"webhook": "https://x/h"}}})
    assert info.value.field == "enterprises.ent-a"
    with pytest.raises(ConfigError, match="at least 16"):
        load_feed_settings({"enterprises": {"ent-a": {"webhook": "https://x/h",
                                                      "secret": "short"}}})
    assert FeedSettings(prefix="p").topic("ent-z") == "p.ent-z"


def test_signature_covers_timestamp_and_body_and_expires() -> None:
    body = b'{"enterprise":"ent-a","records":[]}'
    headers = {"X-ParkWatch-Timestamp": str(NOW), "X-ParkWatch-Signature": sign(body, SECRET_A,
                                                                                 NOW)}
    assert verify_signature(body, headers, SECRET_A, now=NOW + 10)
    assert verify_signature(body, {k.lower(): v for k, v in headers.items()}, SECRET_A, now=NOW)
    assert not verify_signature(body + b" ", headers, SECRET_A, now=NOW)
    assert not verify_signature(body, {**headers, "X-ParkWatch-Timestamp": str(NOW + 1)},
                                SECRET_A, now=NOW)
    assert not verify_signature(body, headers, SECRET_A, now=NOW + 301)
    assert not verify_signature(body, {"X-ParkWatch-Signature": "sha256=00"}, SECRET_A, now=NOW)
    import hashlib
    import hmac

    expect = hmac.new(SECRET_A.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-ParkWatch-Signature"] == "sha256=" + expect


def test_webhook_retries_5xx_with_backoff_then_delivers(receiver: Receiver) -> None:
    receiver.plan["/a"] = [503, 500, 429]
    feeds, sleeps = make(receiver)
    assert feeds.publish([sample_alert(1)]) == 1
    assert sleeps == [0.5, 1.0, 2.0]
    assert len(receiver.bodies("/a")) == 4
    assert len({g.headers["x-parkwatch-delivery"] for g in receiver.got}) == 1  # same delivery
    assert feeds.stats.dead_letters["ent-a"] == 0 and feeds.stats.retries["ent-a"] == 3


def test_undeliverable_posts_are_dead_letters_never_silent(receiver: Receiver) -> None:
    receiver.plan["/a"] = [500] * 10
    receiver.plan["/b"] = [404, 302]
    feeds, _ = make(receiver, max_retries=2)
    feeds.publish([sample_alert(1, ("ent-a",)), sample_alert(2, ("ent-b",))])
    assert feeds.stats.dead_letters == {"ent-a": 1, "ent-b": 1}
    reasons = {d.enterprise: d.reason for d in feeds.dead}
    assert reasons["ent-a"].endswith("HTTP 500") and reasons["ent-b"].endswith("HTTP 404")
    assert len(receiver.bodies("/a")) == 3 and len(receiver.bodies("/b")) == 1  # 4xx: no retry
    feeds.publish([sample_alert(3, ("ent-b",))])  # a redirect is refused, not followed
    assert receiver.bodies("/stolen") == [] and feeds.stats.dead_letters["ent-b"] == 2
    assert feeds.dead[-1].records == ["A0003"] and b"A0003" in feeds.dead[-1].body


def test_unreachable_webhook_is_a_dead_letter(receiver: Receiver) -> None:
    from tests.servers_es import free_port

    conf = {"enterprises": {"ent-a": {"webhook": f"http://127.0.0.1:{free_port()}/x",
                                      "secret": SECRET_A}}, "max_retries": 1}
    sleeps: list[float] = []
    feeds = Feeds(load_feed_settings(conf), sleep=sleeps.append)
    assert feeds.publish([sample_alert(1)]) == 0
    assert feeds.stats.dead_letters["ent-a"] == 1 and "connection" in feeds.dead[0].reason
    assert sleeps == [0.5]


def test_batches_and_topic_failures(receiver: Receiver) -> None:
    class Broken:
        def publish(self, *args: Any, **kwargs: Any) -> None:
            raise TransportError("broker down")

        def flush(self, timeout: float | None = None) -> None:
            pass

    feeds, _ = make(receiver, Broken(), batch_size=2)
    feeds.publish([sample_alert(i) for i in range(5)])
    assert [len(b["records"]) for b in receiver.bodies("/a")] == [2, 2, 1]
    assert feeds.stats.dead_letters["ent-a"] == 5 and feeds.dead[0].channel == "topic"
    assert feeds.stats.webhook_records["ent-a"] == 5

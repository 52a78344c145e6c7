"""Evidence for the defended verdict, gathered from the facts that follow an alert.

An alert names the facts it fired on (event and flow uids) and copies their key fields into
``evidence``. What decides whether the attack worked comes *around* it: the PLC's response to
the write (after it), the answers to a sweep's first requests (before a correlation fires),
the server's reply to the login, the flow record at connection end. The
:class:`EvidenceBook` keeps recent facts of these kinds (bounded memory) and the verdict is
taken when incidents are built.

Verdict rules (one function per family; first rule that applies wins, and its reason is kept):
- defended (True): no working exchange (no SYN-ACK / reply: S0, REJ, RSTOS0, SH, ICMP
  unreachable), the target refused (Modbus exception, DNP3 IIN error bits, S7 error class,
  CIP status, failed logins, HTTP 401/403), or seen at the park boundary but never at the
  target enterprise's boundary although that vantage was watching;
- not defended (False): a response that accepted the request, a successful login, a session
  with payload in both directions, data flowing back to the attacker;
- None: not enough evidence either way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from parkwatch.schema import Alert, FlowRecord, OtEvent

NO_EXCHANGE = {"S0", "REJ", "RSTOS0", "SH", "OTH"}
LIMIT = 200_000


@dataclass
class Facts:
    """What is known about the facts behind one incident."""

    responses: list[tuple[int | None, dict[str, Any]]] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)
    alert_evidence: list[dict[str, Any]] = field(default_factory=list)
    login_success: bool = False
    vantages: set[str] = field(default_factory=set)


class EvidenceBook:
    """Recent facts: every response by the request it answers, every flow by uid, successful
    logins by (client, server) — each bounded (the oldest are forgotten first), so facts that
    came *before* an alert (the answers to a sweep's first requests) count as well as later."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.responses: OrderedDict[str, list[tuple[int | None, dict[str, Any]]]] = OrderedDict()
        self.flows: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.logins: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.vantages_seen: set[str] = set()

    def _keep(self, od: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        od[key] = value
        od.move_to_end(key)
        if len(od) > self.limit:
            od.popitem(last=False)

    def watch(self, alert: Alert) -> None:
        """Kept for callers: every fact is recorded anyway (bounded)."""

    def observe(self, rec: Any) -> None:
        """Feed every fact (flows and events) after the detectors saw it."""
        if isinstance(rec, OtEvent):
            if rec.vantage:
                self.vantages_seen.add(rec.vantage)
            req = rec.request_uid
            if rec.direction == "response" and req is not None:
                got = self.responses.get(req, [])
                got.append(
                    (
                        rec.exception_code,
                        {"status": rec.attrs.get("status"), "login": rec.attrs.get("login")},
                    )
                )
                self._keep(self.responses, req, got)
            if rec.attrs.get("login") == "success":  # server -> client reply
                self._keep(self.logins, (rec.dst_ip, rec.src_ip), rec.ts)
        elif isinstance(rec, FlowRecord):
            self.vantages_seen.add(rec.vantage)
            self._keep(
                self.flows,
                rec.uid,
                {
                    "conn_state": rec.conn_state,
                    "history": rec.history,
                    "orig_payload_bytes": rec.orig_payload_bytes,
                    "resp_payload_bytes": rec.resp_payload_bytes,
                    "vantage": rec.vantage,
                },
            )

    def facts(self, alerts: list[Alert]) -> Facts:
        f = Facts()
        for a in alerts:
            f.alert_evidence.append(a.evidence)
            if a.vantage:
                f.vantages.add(a.vantage)
            for u in a.event_uids:
                f.responses += self.responses.get(u, [])
            for u in a.flow_uids:
                if u in self.flows:
                    f.flows.append(self.flows[u])
            for att in a.attackers:
                for tgt in a.targets:
                    if (att, tgt) in self.logins:
                        f.login_success = True
        return f


def _all(entries: list[dict[str, Any]], key: str) -> list[Any]:
    """Every value of ``key`` in ``entries`` (correlation alerts list the distinct values)."""
    out: list[Any] = []
    for e in entries:
        v = e.get(key)
        if isinstance(v, list | tuple):
            out.extend(x for x in v if x is not None)
        elif v is not None:
            out.append(v)
    return out


def _ints(values: list[Any]) -> list[int]:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            continue
    return out


def verdict(category: str, f: Facts) -> tuple[bool | None, str]:
    """(defended, why) for an incident of ``category`` with facts ``f``."""
    ev = f.alert_evidence
    logins = [str(x) for x in _all(ev, "login")]
    if category == "brute_force" or logins:
        if f.login_success or "success" in logins:
            return False, "a login succeeded"
        if logins and all(x == "failure" for x in logins):
            return True, f"{len(logins)} failed logins, none succeeded"
    refused = [r for r in f.responses if r[0] is not None]
    accepted = [r for r in f.responses if r[0] is None]
    statuses = _ints([r[1].get("status") for r in f.responses])
    if statuses and all(s in (401, 403) for s in statuses):
        return True, f"every response refused with HTTP {sorted(set(statuses))}"
    if statuses and any(200 <= s < 300 for s in statuses) and category == "exploit":
        return False, "the server answered the exploit request with HTTP 2xx"
    if accepted and category not in ("dos",):
        return False, f"{len(accepted)} request(s) answered without error"
    if refused and not accepted:
        codes = sorted({r[0] for r in refused if r[0] is not None})
        return True, f"every answered request was refused (codes {codes})"
    ex_codes = _ints(_all(ev, "exception_code"))
    if ex_codes and category not in ("dos",):
        return True, f"the target answered with error codes {sorted(set(ex_codes))}"
    facts = [*f.flows, *ev]
    states = [str(s) for s in _all(facts, "conn_state")]
    if states:
        answered = any("h" in str(h).lower() for h in _all(facts, "history"))
        payload_back = any(int(x) > 0 for x in _ints(_all(facts, "resp_payload_bytes")))
        if all(s in NO_EXCHANGE for s in states) and not (answered and payload_back):
            rej = sum(1 for s in states if s == "REJ")
            why = "no connection was ever established"
            return True, why + (f" ({rej} rejected)" if rej else "")
        both = any(
            _ints(_all([x], "orig_payload_bytes"))
            and _ints(_all([x], "resp_payload_bytes"))
            and max(_ints(_all([x], "orig_payload_bytes"))) > 0
            and max(_ints(_all([x], "resp_payload_bytes"))) > 0
            for x in facts
        )
        if both and category in (
            "c2",
            "exfiltration",
            "lateral_movement",
            "exploit",
            "policy_violation",
        ):
            return False, "sessions with payload in both directions"
        if category == "recon_scan" and any(s not in NO_EXCHANGE for s in states):
            return False, "the target answered (open ports or services found)"
    return None, "not enough evidence either way"

"""Suppression rules: operators' false-positive decisions, applied before incidents are raised.

A rules file is YAML, a list of mappings; an alert is suppressed when every key a rule gives
matches (``rule_id``, ``detector``, ``category``, ``attacker`` / ``target`` as IP or CIDR,
``until`` as RFC 3339 — the rule expires then) ::

    - rule_id: pw-net-002
      attacker: 10.0.0.53
      reason: park DNS resolver answers many hosts by design
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from parkwatch.errors import ConfigError
from parkwatch.schema import Alert, SchemaError, parse_ts

KEYS = {"rule_id", "detector", "category", "attacker", "target", "until", "reason"}


@dataclass(frozen=True)
class Suppression:
    rule_id: str | None = None
    detector: str | None = None
    category: str | None = None
    attacker: Any = None  # ip_network
    target: Any = None
    until: int | None = None
    reason: str = ""

    def matches(self, a: Alert) -> bool:
        if self.until is not None and a.ts > self.until:
            return False
        for name in ("rule_id", "detector", "category"):
            want = getattr(self, name)
            if want is not None and getattr(a, name) != want:
                return False
        for net, addrs in ((self.attacker, a.attackers), (self.target, a.targets)):
            if net is not None and not any(_in(x, net) for x in addrs):
                return False
        return True


def _in(addr: str, net: Any) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return bool(ip.version == net.version and ip in net)


class Suppressions:
    def __init__(self, rules: list[Suppression]) -> None:
        self.rules = rules

    def matches(self, a: Alert) -> bool:
        return any(r.matches(a) for r in self.rules)

    @classmethod
    def load(cls, path: str | Path | None) -> Suppressions:
        if path is None:
            return cls([])
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read suppression rules: {exc}", file=str(p)) from exc
        return cls.parse(data, str(p))

    @classmethod
    def parse(cls, data: Any, where: str) -> Suppressions:
        """Rules from a list of mappings (a rules file, or the store's false positives)."""
        if not isinstance(data, list):
            raise ConfigError("suppression rules are a YAML list", file=where)
        rules = []
        for k, item in enumerate(data):
            if not isinstance(item, dict) or not item or set(item) - KEYS:
                bad = sorted(set(item) - KEYS) if isinstance(item, dict) else []
                raise ConfigError(
                    f"rule {k}: unknown keys {bad}" if bad else f"rule {k} must be a mapping",
                    file=where,
                    field=f"[{k}]",
                )
            try:
                rules.append(
                    Suppression(
                        rule_id=item.get("rule_id"),
                        detector=item.get("detector"),
                        category=item.get("category"),
                        attacker=_net(item.get("attacker")),
                        target=_net(item.get("target")),
                        until=parse_ts(str(item["until"])) if item.get("until") else None,
                        reason=str(item.get("reason", "")),
                    )
                )
            except (ValueError, SchemaError) as exc:
                raise ConfigError(f"rule {k}: {exc}", file=where, field=f"[{k}]") from exc
        return cls(rules)

    def __add__(self, other: Suppressions) -> Suppressions:
        return Suppressions(self.rules + other.rules)


def _net(value: Any) -> Any:
    return None if value is None else ipaddress.ip_network(str(value), strict=False)

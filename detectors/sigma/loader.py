"""Load a Sigma rule pack with pySigma and read ParkWatch's conventions from each rule.

Rules are standard Sigma YAML (``SigmaCollection.load_ruleset``). ParkWatch reads, per rule:

- ``logsource``: ``product: parkwatch`` and ``category`` = one of :data:`KINDS` (the kind of
  record the rule runs on); correlation rules take the kind of the rules they reference;
- ``level`` (Sigma's scale), ``tags``: ``attack.tNNNN[.NNN]`` -> technique ``TNNNN[.NNN]``,
  ``attack.<tactic>`` (e.g. ``attack.discovery``) -> tactic;
- the custom top-level attribute ``parkwatch`` (pySigma keeps it in ``custom_attributes``,
  ``sigma check`` accepts it)::

      parkwatch:
        category: recon_scan      # one of parkwatch.schema.CATEGORIES (required)
        attackers: [src_ip]       # record fields naming the attacker IPs (optional)
        targets: [dst_ip]         # record fields naming the target IPs (optional)

  Defaults: ``sender_ip``/``target_ip`` for ``arp``, ``src_ip``/``dst_ip`` otherwise; a
  correlation rule without its own lists uses those of its first referenced rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from parkwatch.errors import ConfigError
from parkwatch.schema import CATEGORIES

KINDS = (
    "flow",
    "arp",
    "dns",
    "http",
    "tls",
    "shell",
    "ssh",
    "ftp",
    "telnet",
    "smb",
    "modbus",
    "dnp3",
    "s7comm",
    "iec104",
    "enip",
    "opcua",
    "bacnet",
    "mqtt",
    "weird",
)
"""Log-source categories (record kinds) of product ``parkwatch``."""

PRODUCT = "parkwatch"
_TECHNIQUE = re.compile(r"^t\d{4}(\.\d{3})?$")
_OTHER_ATTACK = re.compile(r"^[gs]\d{4}$")  # groups and software are not tactics
_PW_KEYS = {"category", "attackers", "targets"}


class RuleError(ConfigError):
    """A rule pack that cannot be loaded or compiled (names the rule file)."""

    hint = "fix the rule named (see rules/README.md), then run 'parkwatch rules check'"


@dataclass(frozen=True)
class RuleMeta:
    """What an alert of one rule says besides its evidence."""

    id: str
    name: str | None
    title: str
    level: str
    kind: str | None
    techniques: tuple[str, ...]
    tactics: tuple[str, ...]
    category: str | None
    attackers: tuple[str, ...] | None
    targets: tuple[str, ...] | None
    source: str | None


@dataclass
class RulePack:
    """Base rules and correlation rules of one pack, with their metadata."""

    rules: list[tuple[SigmaRule, RuleMeta]] = field(default_factory=list)
    correlations: list[tuple[SigmaCorrelationRule, RuleMeta]] = field(default_factory=list)
    collection: SigmaCollection | None = None

    def __len__(self) -> int:
        return len(self.rules) + len(self.correlations)


def rule_files(root: str | Path) -> list[Path]:
    """Every ``*.yml``/``*.yaml`` file under ``root`` (a file is taken as is), sorted."""
    path = Path(root)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise RuleError("no such rule file or directory", file=str(path))
    skip = {"pipelines"}
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix in (".yml", ".yaml") and p.is_file() and not skip & set(p.parts)
    )


def load_collection(root: str | Path | list[Path]) -> SigmaCollection:
    """All rules under ``root`` as one resolved collection (errors collected per rule)."""
    files = root if isinstance(root, list) else rule_files(root)
    for f in files:  # YAML syntax errors first, with file and line (pySigma would raise them raw)
        try:
            list(yaml.safe_load_all(Path(f).read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise RuleError(
                f"not valid YAML: {getattr(exc, 'problem', exc)}",
                file=str(f),
                line=mark.line + 1 if mark else None,
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(f"cannot read rule file: {exc}", file=str(f)) from None
    try:
        return SigmaCollection.load_ruleset(list(files), collect_errors=True)
    except SigmaError as exc:  # broken correlation references surface at resolve time
        raise RuleError(str(exc), file=_src(exc)) from None


def load_pack(root: str | Path | list[Path]) -> RulePack:
    """Load and check a pack; the first broken rule raises :class:`RuleError`."""
    coll = load_collection(root)
    pack = RulePack(collection=coll)
    for rule in coll.rules:
        if rule.errors:
            err = rule.errors[0]
            raise RuleError(f"invalid Sigma rule: {err}", file=_src(err) or _where(rule))
        meta = rule_meta(rule)
        if isinstance(rule, SigmaCorrelationRule):
            pack.correlations.append((rule, meta))
        elif isinstance(rule, SigmaRule):
            pack.rules.append((rule, meta))
    return pack


def rule_meta(rule: SigmaRule | SigmaCorrelationRule) -> RuleMeta:
    """ParkWatch metadata of ``rule`` (RuleError on convention violations)."""
    where = _where(rule)
    if rule.id is None:
        raise RuleError("rule has no id", file=where)
    kind = None
    if isinstance(rule, SigmaRule):
        ls = rule.logsource
        if ls.product != PRODUCT or ls.category not in KINDS:
            raise RuleError(
                f"logsource must be product {PRODUCT!r} with a category in {', '.join(KINDS)}; "
                f"got product={ls.product!r} category={ls.category!r}",
                file=where,
            )
        kind = ls.category
    pw = rule.custom_attributes.get("parkwatch") or {}
    if not isinstance(pw, dict) or set(pw) - _PW_KEYS:
        raise RuleError(f"'parkwatch' must be a mapping with keys {sorted(_PW_KEYS)}", file=where)
    category = pw.get("category")
    if category is not None and category not in CATEGORIES:
        raise RuleError(f"parkwatch.category {category!r} is not one of {CATEGORIES}", file=where)
    techniques, tactics = [], []
    for tag in rule.tags:
        if tag.namespace != "attack":
            continue
        name = tag.name.lower()
        if _TECHNIQUE.match(name):
            techniques.append(name.upper())
        elif not _OTHER_ATTACK.match(name):
            tactics.append(name)
    return RuleMeta(
        id=str(rule.id),
        name=rule.name,
        title=rule.title,
        level=rule.level.name.lower() if rule.level else "medium",
        kind=kind,
        techniques=tuple(techniques),
        tactics=tuple(tactics),
        category=category,
        attackers=_fields(pw.get("attackers"), "attackers", where),
        targets=_fields(pw.get("targets"), "targets", where),
        source=where,
    )


def _fields(value: Any, key: str, where: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"parkwatch.{key} must be a field name or a list of them", file=where)
    return tuple(value)


def _where(rule: SigmaRule | SigmaCorrelationRule) -> str | None:
    return str(rule.source.path) if rule.source and rule.source.path else None


def _src(err: SigmaError) -> str | None:
    src = getattr(err, "source", None)
    return str(src.path) if src is not None and getattr(src, "path", None) else None

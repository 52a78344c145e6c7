"""Compile pySigma detection trees into Python predicates.

pySigma parses a rule's ``detection`` (modifiers applied) and its ``condition`` into a tree of
``ConditionAND``/``ConditionOR``/``ConditionNOT`` over ``ConditionFieldEqualsValueExpression``
(field = value) and ``ConditionValueExpression`` (keyword) leaves; ``1 of sel*`` /
``all of them`` are already expanded. This module turns that tree into a small node tree
(:class:`Leaf`, :class:`And`, :class:`Or`, :class:`Not`) and then into Python source: one
function per record kind that tests every rule of that kind and returns the indexes of the
rules that matched. OR-linked plain values of one field (``dst_port: [22, 23]``) become one set
lookup. Several ``condition`` entries of one rule are OR-linked.

Keyword leaves (values without a field) match when any text field of the record matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaRegularExpression,
    SigmaString,
)

from detectors.sigma.modifiers import Matcher, UnsupportedValue, equality_set, is_plain, matcher


@dataclass
class Leaf:
    """One test: ``kind`` is value, null, exists, fieldref or keyword."""

    kind: str
    field: str | None
    text: str
    match: Any = None
    exists: bool = True
    ref: str | None = None


@dataclass
class And:
    args: list[Node]


@dataclass
class Or:
    args: list[Node]


@dataclass
class Not:
    arg: Node


Node = Leaf | And | Or | Not


def describe(value: Any) -> str:
    """Short text of a pySigma value for reasons: ``'S0'``, ``~'*scan*'``, ``>1000000``."""
    if isinstance(value, SigmaRegularExpression):
        return f"re /{value.regexp}/"
    if isinstance(value, SigmaCIDRExpression):
        return f"cidr {value.cidr}"
    if isinstance(value, SigmaCompareExpression):
        ops = {"LT": "<", "LTE": "<=", "GT": ">", "GTE": ">=", "NEQ": "!="}
        return f"{ops[value.op.name]}{value.number.number}"
    if isinstance(value, SigmaExpansion):
        return " | ".join(describe(v) for v in value.values)
    if isinstance(value, SigmaString):
        plain = value.convert(escape_char=None, add_escaped="")
        return f"~{plain!r}" if value.contains_special() else repr(plain)
    if isinstance(value, SigmaNull):
        return "null"
    return repr(getattr(value, "number", getattr(value, "boolean", str(value))))


def node_of(cond: Any) -> Node:
    """Our node tree of one pySigma condition tree (UnsupportedValue for unknown items)."""
    if isinstance(cond, ConditionAND):
        return And([node_of(a) for a in cond.args])
    if isinstance(cond, ConditionOR):
        return _or(cond.args)
    if isinstance(cond, ConditionNOT):
        return Not(node_of(cond.args[0]))
    if isinstance(cond, ConditionFieldEqualsValueExpression):
        return _field_leaf(cond.field, cond.value)
    if isinstance(cond, ConditionValueExpression):
        return _keyword(cond.value)
    raise UnsupportedValue(f"condition item {type(cond).__name__} is not supported")


def _or(args: list[Any]) -> Node:
    """OR node; plain values of one field are merged into one set lookup."""
    out: list[Node] = []
    plain: dict[str, list[Any]] = {}
    for a in args:
        if isinstance(a, ConditionFieldEqualsValueExpression) and is_plain(a.value):
            if a.field not in plain:
                plain[a.field] = []
                out.append(Leaf("value", a.field, ""))  # placeholder, filled below
            plain[a.field].append(a.value)
        else:
            out.append(node_of(a))
    for i, n in enumerate(out):
        if isinstance(n, Leaf) and n.kind == "value" and n.match is None and n.field in plain:
            values = plain[n.field]
            text = ", ".join(describe(v) for v in values)
            out[i] = Leaf(
                "value", n.field, f"in ({text})" if len(values) > 1 else text, equality_set(values)
            )
    return out[0] if len(out) == 1 else Or(out)


def _field_leaf(field: str, value: Any) -> Leaf:
    if isinstance(value, SigmaNull):
        return Leaf("null", field, "null")
    if isinstance(value, SigmaExists):
        return Leaf("exists", field, "exists" if value.exists else "missing", exists=value.exists)
    if isinstance(value, SigmaFieldReference):
        mode = "startswith" if value.starts_with else "endswith" if value.ends_with else "equals"
        return Leaf(
            "fieldref", field, f"{mode} field {value.field}", _fieldref(mode), ref=value.field
        )
    return Leaf("value", field, describe(value), matcher(value))


def _fieldref(mode: str) -> Callable[[Any, Any], bool]:
    def match(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        x, y = str(a).lower(), str(b).lower()
        return (
            x.startswith(y)
            if mode == "startswith"
            else x.endswith(y)
            if mode == "endswith"
            else x == y
        )

    return match


def _keyword(value: Any) -> Leaf:
    m: Matcher = matcher(value)

    def match(rec: dict[str, Any]) -> bool:
        for v in rec.values():
            if (v.__class__ is str or v.__class__ in (list, tuple)) and m(v):
                return True
        return False

    return Leaf("keyword", None, describe(value), match)


def rule_node(rule: SigmaRule) -> Node:
    """The node tree of a rule (several conditions are OR-linked)."""
    nodes = []
    for cond in rule.detection.parsed_condition:
        parsed = cond.parsed
        if parsed is None:
            raise UnsupportedValue("the condition selects nothing")
        nodes.append(node_of(parsed))
    return nodes[0] if len(nodes) == 1 else Or(nodes)


def fields_of(node: Node) -> set[str | None]:
    """Fields a node reads (None when a keyword leaf reads every field)."""
    if isinstance(node, Leaf):
        return {node.field, node.ref} - {None} if node.kind != "keyword" else {None}
    if isinstance(node, Not):
        return fields_of(node.arg)
    return set().union(*(fields_of(a) for a in node.args))


def _source(node: Node, env: dict[str, Any]) -> str:
    if isinstance(node, And):
        return "(" + " and ".join(_source(a, env) for a in node.args) + ")"
    if isinstance(node, Or):
        return "(" + " or ".join(_source(a, env) for a in node.args) + ")"
    if isinstance(node, Not):
        return f"(not {_source(node.arg, env)})"
    name = f"_m{len(env)}"
    if node.kind == "null":
        return f"(g({node.field!r}) is None)"
    if node.kind == "exists":
        return f"((g({node.field!r}) is not None) is {node.exists})"
    env[name] = node.match
    if node.kind == "keyword":
        return f"{name}(r)"
    if node.kind == "fieldref":
        return f"{name}(g({node.field!r}), g({node.ref!r}))"
    return f"{name}(g({node.field!r}))"


def compile_kind(nodes: list[tuple[int, Node]]) -> Callable[[dict[str, Any]], list[int]]:
    """One function testing every ``(index, node)``; returns the indexes that matched."""
    env: dict[str, Any] = {}
    lines = ["def match(r):", "    g = r.get", "    out = []"]
    for index, node in nodes:
        lines.append(f"    if {_source(node, env)}:")
        lines.append(f"        out.append({index})")
    lines.append("    return out")
    exec(compile("\n".join(lines), "<sigma rules>", "exec"), env)
    fn: Callable[[dict[str, Any]], list[int]] = env["match"]
    return fn


def evaluate(node: Node, rec: dict[str, Any]) -> bool:
    """Interpretive evaluation (same semantics as the compiled function)."""
    if isinstance(node, And):
        return all(evaluate(a, rec) for a in node.args)
    if isinstance(node, Or):
        return any(evaluate(a, rec) for a in node.args)
    if isinstance(node, Not):
        return not evaluate(node.arg, rec)
    v = rec.get(node.field) if node.field is not None else None
    if node.kind == "null":
        return v is None
    if node.kind == "exists":
        return (v is not None) is node.exists
    if node.kind == "keyword":
        return bool(node.match(rec))
    if node.kind == "fieldref":
        return bool(node.match(v, rec.get(node.ref or "")))
    return bool(node.match(v))


def explain(node: Node, rec: dict[str, Any]) -> list[str]:
    """The tests that made ``node`` true on ``rec``, as ``field=value (rule: …)`` texts."""
    if isinstance(node, And):
        return [t for a in node.args for t in explain(a, rec)]
    if isinstance(node, Or):
        for a in node.args:
            if evaluate(a, rec):
                return explain(a, rec)
        return []
    if isinstance(node, Not):
        return [f"not({'; '.join(_leaves(node.arg))})"]
    if node.kind == "keyword":
        return [f"keyword {node.text}"]
    return [f"{node.field}={rec.get(node.field or '')!r} ({node.text})"]


def _leaves(node: Node) -> list[str]:
    if isinstance(node, Leaf):
        return [f"{node.field or 'keyword'} {node.text}"]
    if isinstance(node, Not):
        return _leaves(node.arg)
    return [t for a in node.args for t in _leaves(a)]

"""Columns.jsonl() on batches large enough to take its grouping paths, against to_json() per row.

tests/test_schema.py checks five distinct rows per record type; these batches mix constant,
low-cardinality and unique columns, so the constant text, grouped and column-at-a-time
renderings (and the fallbacks for values that must not share a rendering) all run.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from parkwatch.schema import Alert, FlowRecord, Incident, OtEvent, Record
from parkwatch.schema.columns import Columns

TS = 1_709_539_981_689_915_000


def columns(kind: type[Record], rows: list[dict[str, Any]], ints: tuple[str, ...] = ()) -> Columns:
    """Columns of ``rows`` (object columns, int64 for the ``ints`` fields)."""
    data = {}
    for f in dataclasses.fields(kind):  # type: ignore[arg-type]
        values = [r[f.name] for r in rows]
        if f.name in ints:
            data[f.name] = np.array(values, dtype=np.int64)
        else:
            data[f.name] = np.empty(len(values), dtype=object)
            data[f.name][:] = values
    return Columns(kind, data)


def expected(cols: Columns) -> bytes:
    return b"".join(r.to_json() + b"\n" for r in cols.records())


def event(i: int, **over: Any) -> dict[str, Any]:
    flow = i // 7  # a few messages per flow, as decoders emit them
    row = {
        "uid": f"C{i:08x}.{i % 3}",
        "ts": TS + i * 1_000_000 + (i % 5 == 0) * 7,  # every fifth needs 9 digits
        "protocol": ["modbus", "dnp3", "s7comm"][i % 3],
        "direction": ["request", "response"][i % 2],
        "src_ip": f"10.0.{flow % 7}.{flow % 50}",
        "src_port": 40000 + flow,
        "dst_ip": "10.0.9.1",
        "dst_port": 502,
        "community_id": f"1:{flow:020d}=",
        "flow_uid": f"C{flow:08x}" if i % 11 else None,
        "vantage": "gw-1",
        "unit": [1, 2, None][i % 3],
        "function_code": [3, 16, None, 0][i % 4],
        "function_name": ['read "holding" registers', "écrire", "100% \\ done", None][i % 4],
        "exception_code": None,
        "request_uid": f"C{i - 1:08x}" if i % 2 else None,
        "address": i % 13,
        "quantity": None if i % 5 else 10,
        "values": None,
        "data_area": "holding_register",
        "src_enterprise": None,
        "src_zone": ["ot", "it\n"][i % 2],
        "src_role": None,
        "dst_enterprise": "acme",
        "dst_zone": "ot",
        "dst_role": "plc",
        "attrs": {"k": [i % 4, "x\u2028"], "n": None} if i % 3 else {},
    }
    return {**row, **over}


@pytest.mark.parametrize("n", [1, 2, 700, 3000])
def test_events_mixing_constant_grouped_and_unique_columns(n):
    cols = columns(OtEvent, [event(i) for i in range(n)], ints=("ts", "src_port", "dst_port"))
    assert cols.jsonl() == expected(cols)


def test_values_that_compare_equal_but_render_differently_keep_their_own_text():
    """1 == True == 1.0 and (1,) == (True,): a shared rendering would write the wrong one."""
    rows = [
        event(
            i,
            unit=[1, True][i % 2],
            function_code=[0, False][i % 3 == 0],
            values=[(1, 2), (True, False), None][i % 3],
            address=[1.0, 1][i % 2],
        )
        for i in range(1500)
    ]
    cols = columns(OtEvent, rows)  # object columns: Python ints from the rows
    out = cols.jsonl()
    assert out == expected(cols)
    assert b'"unit":true' in out and b'"unit":1,' in out and b'"values":[true,false]' in out


def test_unhashable_values_in_a_text_field_and_none_in_a_safe_field():
    rows = [
        event(
            i,
            function_name=["read", ["a", 1]][i % 400 == 399],
            protocol="modbus",
            direction=None if i == 5 else "request",
            data_area={"x": 1} if i == 0 else "c",
        )
        for i in range(1200)
    ]  # the sample sees data_area's dict, not function_name's list
    cols = columns(OtEvent, rows)
    assert cols.jsonl() == expected(cols)


def test_safe_fields_that_break_their_promise_and_bools_in_int_fields():
    """A quote, backslash, control or non-ASCII character in a safe field is still escaped."""
    bad = ['a"b', "a\\b", "a\x00b", "a\nb", "añ"]
    rows = [
        event(
            i,
            uid=bad[i % 5] if i % 100 == 0 else f"C{i}",
            src_port=[80, True][i % 2],
            community_id=bad[i % 5],
            dst_ip="10.0.0.1",
        )
        for i in range(1000)
    ]
    cols = columns(OtEvent, rows)  # src_port: an object column, True must stay true
    out = cols.jsonl()
    assert out == expected(cols)
    assert b'"src_port":true' in out


def test_one_value_everywhere_and_timestamps_at_the_int64_edges():
    edges = [-(2**63) + 1, -1, 0, 1, 999, 1000, 2**63 - 1]
    rows = [
        event(0, uid="C0", ts=edges[i % len(edges)], src_port=1, flow_uid=None)
        for i in range(len(edges) * 100)
    ]
    cols = columns(OtEvent, rows)
    assert cols.jsonl() == expected(cols)


def test_flows_and_alerts_with_floats_optional_timestamps_and_tuples():
    ints = [f.name for f in dataclasses.fields(FlowRecord) if f.type == "int"]
    flows = [{f.name: None for f in dataclasses.fields(FlowRecord)} for _ in range(900)]
    for i, r in enumerate(flows):
        r.update(dict.fromkeys(ints, i * 7919))
        r.update(
            uid=f"F{i}",
            vantage="v",
            src_ip="10.0.0.1",
            dst_ip=f"10.0.1.{i % 9}",
            community_id=f"1:{i}",
            conn_state="SF",
            history="ShAD",
            end_reason="fin",
            orig_flags="S",
            resp_flags="SA",
            vlan=[None, 7][i % 2],
            src_mac="%s%%d",
        )
    cols = columns(FlowRecord, flows)
    assert cols.jsonl() == expected(cols)
    alert = {f.name: None for f in dataclasses.fields(Alert)}
    fields = {f.name: str(f.type) for f in dataclasses.fields(Alert)}
    alerts = []
    for i in range(600):
        row = dict(alert)
        for name, t in fields.items():
            if t == "int":
                row[name] = TS + i
            elif t == "str":
                row[name] = f"s{i % 4}"
            elif t.startswith("tuple"):
                row[name] = ("a", f"b{i % 2}")
            elif t.startswith("dict"):
                row[name] = {"i": i % 3}
            elif t.startswith("float"):
                row[name] = [0.0, -0.0, 0.5, None][i % 4]
        alerts.append(row)
    cols = columns(Alert, alerts)
    out = cols.jsonl()
    assert out == expected(cols)
    assert b"-0.0" in out


def test_incidents_with_optional_timestamps_and_optional_bools():
    fields = {f.name: str(f.type) for f in dataclasses.fields(Incident)}
    rows = []
    for i in range(800):
        row: dict[str, Any] = {}
        for name, t in fields.items():
            if t == "int":
                row[name] = TS + (i // 3) * 1000
            elif t == "int | None":  # acknowledged_at, resolved_at: ts fields that may be None
                row[name] = [None, TS + i, TS + 1][i % 3]
            elif t.startswith("tuple"):
                row[name] = (f"t{i % 2}",)
            elif t == "bool | None":
                row[name] = [True, False, None][i % 3]
            else:
                row[name] = f"x{i % 5}" if t == "str" else None
        rows.append(row)
    cols = columns(Incident, rows)
    assert cols.jsonl() == expected(cols)

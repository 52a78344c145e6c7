"""Contract tests over every record type in parkwatch.schema.RECORD_TYPES and every sink."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parkwatch.schema import RECORD_TYPES, Record, SchemaError, format_ts, parse_ts
from parkwatch.schema.columns import Columns
from parkwatch.sinks import SINKS

TS = 1_763_700_000_123_456_789


def sample_value(f: dataclasses.Field, i: int) -> object:
    """A value of the field's declared type (the non-None member of an Optional)."""
    t = str(f.type)
    if f.metadata.get("ts"):
        return TS + i
    if t.startswith("int"):
        return 1000 + i
    if t.startswith("float"):
        return 0.25 + i
    if t.startswith("bool"):
        return i % 2 == 0
    if t.startswith("str") and f.metadata.get("safe"):
        return f"v{i}-10.0.0.1:ShAD"  # safe fields promise text that needs no JSON escape
    if t.startswith("str"):
        return f'v{i} "quoted" \\ ünï'
    if t.startswith("tuple"):
        return (f"a{i}", f"b{i}")
    if t.startswith("dict"):
        return {"k": [i, "x"], "n": None}
    raise AssertionError(f"no sample for {f.name}: {t}")


def sample(kind: type[Record], i: int = 0) -> Record:
    return kind(**{f.name: sample_value(f, i) for f in dataclasses.fields(kind)})  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", RECORD_TYPES, ids=lambda k: k.SCHEMA)
def test_every_field_has_a_one_line_doc(kind):
    for name, _type, text in kind.describe():
        assert text and "\n" not in text and len(text) < 120, name


@pytest.mark.parametrize("kind", RECORD_TYPES, ids=lambda k: k.SCHEMA)
def test_json_round_trip_is_exact(kind):
    rec = sample(kind)
    data = orjson.loads(rec.to_json())
    assert data["schema"] == f"{kind.SCHEMA}/{kind.VERSION}"
    assert kind.from_json(rec.to_json()) == rec
    assert kind.from_dict(rec.to_dict()) == rec


@pytest.mark.parametrize("kind", RECORD_TYPES, ids=lambda k: k.SCHEMA)
def test_unknown_fields_and_other_versions_are_refused(kind):
    data = sample(kind).to_dict()
    with pytest.raises(SchemaError, match="unknown fields"):
        kind.from_dict({**data, "surprise": 1})
    with pytest.raises(SchemaError, match="expected"):
        kind.from_dict({**data, "schema": f"{kind.SCHEMA}/{kind.VERSION + 1}"})
    with pytest.raises(SchemaError):
        kind.from_json(b"[1, 2]")
    with pytest.raises(SchemaError):
        kind.from_json(b"{not json")


@pytest.mark.parametrize("kind", RECORD_TYPES, ids=lambda k: k.SCHEMA)
def test_columns_render_the_same_json_as_records(kind):
    recs = [sample(kind, i) for i in range(5)]
    names = [f.name for f in dataclasses.fields(kind)]
    data = {}
    for n in names:
        values = [getattr(r, n) for r in recs]
        col = np.empty(len(values), dtype=object)
        col[:] = values
        if all(type(v) is int for v in values):
            col = np.array(values, dtype=np.int64)
        data[n] = col
    cols = Columns(kind, data)
    assert cols.records() == recs
    assert cols.jsonl() == b"".join(r.to_json() + b"\n" for r in recs)
    assert cols.take(np.array([4, 0])).records() == [recs[4], recs[0]]
    with pytest.raises(SchemaError):
        Columns(kind, {n: data[n] for n in names[1:]})


@pytest.mark.parametrize("name", list(SINKS), ids=str)
def test_every_sink_writes_records_and_batches(name):
    kind = RECORD_TYPES[0]
    out = io.BytesIO()
    sink = SINKS.get(name)(out)
    sink.write(sample(kind, 0))
    names = [f.name for f in dataclasses.fields(kind)]
    recs = [sample(kind, i) for i in (1, 2)]
    data = {}
    for n in names:
        col = np.empty(2, dtype=object)
        col[:] = [getattr(r, n) for r in recs]
        data[n] = col
    sink.write_many(Columns(kind, data))
    sink.close()
    text = out.getvalue().decode()
    assert "v0" in text and "v1" in text and "v2" in text


@given(st.integers(min_value=0, max_value=2**62))
def test_timestamps_round_trip_to_the_nanosecond(ns):
    text = format_ts(ns)
    assert text.endswith("Z") and "T" in text
    assert parse_ts(text) == ns


def test_parse_ts_accepts_offsets_and_refuses_garbage():
    assert parse_ts("2025-11-21T12:40:00+08:00") == parse_ts("2025-11-21T04:40:00Z")
    assert parse_ts("2025-11-21T04:40:00.5Z") == parse_ts("2025-11-21T04:40:00Z") + 500_000_000
    for bad in ("yesterday", "2025-13-01T00:00:00Z", "2025-11-21T04:40:00.1234567890Z"):
        with pytest.raises(SchemaError):
            parse_ts(bad)


def test_a_stored_weird_of_schema_1_reads_as_schema_2_without_flow_context():
    from parkwatch.schema import Weird

    old = (b'{"schema":"parkwatch.weird/1","ts":"2025-11-21T07:43:40.001000Z",'
           b'"name":"bad_mbap_length","layer":"modbus","detail":"length 0 < 2","file":"x.pcap",'
           b'"frame":7,"vantage":"park-gw"}')
    w = Weird.from_json(old)
    assert (w.name, w.frame, w.src_ip, w.flow_uid) == ("bad_mbap_length", 7, None, None)
    assert orjson.loads(w.to_json())["schema"] == "parkwatch.weird/2"
    with pytest.raises(SchemaError, match="unknown fields"):  # a /1 record has no flow context
        Weird.from_json(old[:-1] + b',"surprise":1}')
    with pytest.raises(SchemaError, match="expected"):
        Weird.from_json(old.replace(b"weird/1", b"weird/0"))

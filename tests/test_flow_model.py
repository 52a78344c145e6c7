"""Flow model: features, scan separation, explanations, per-zone models, train CLI, model card."""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import ipaddress
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from detectors.anomaly import FlowModel, LearnThenScore, QuantileThreshold, parse_duration
from detectors.anomaly.features import FEATURE_NAMES, FEATURES, N_FEATURES, flow_features
from detectors.anomaly.modelcard import ModelError, card_path, load_model
from detectors.anomaly.train_cli import train_command
from parkwatch.errors import CaptureError, ConfigError
from parkwatch.schema import Alert, FlowRecord, parse_ts
from parkwatch.topology import load_topology
from tests.helpers import run_capture

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "replay_pcaps"
PARK = str(REPLAY / "park.yaml")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "pcaps"
SCANNER = "10.2.66.66"  # benchmarks/corpus.py: the SYN scanner of the PLC subnet
_TMP = Path(tempfile.mkdtemp(prefix="pw-anomaly-"))
atexit.register(shutil.rmtree, _TMP, True)


@functools.lru_cache
def corpus(seed: int, packets: int = 20_000, benign: bool = False) -> str:
    """The benchmark corpus (deterministic park traffic with a SYN scan); ``benign`` drops
    every packet to or from the scanner."""
    spec = importlib.util.spec_from_file_location("pw_corpus", ROOT / "benchmarks" / "corpus.py")
    assert spec is not None and spec.loader is not None
    mod = sys.modules.get("pw_corpus") or importlib.util.module_from_spec(spec)
    sys.modules["pw_corpus"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    path = _TMP / f"corpus-{seed}-{packets}.pcap"
    if not path.exists():
        mod.write_corpus(path, packets=packets, seed=seed)
    if not benign:
        return str(path)
    out = _TMP / f"corpus-{seed}-{packets}-benign.pcap"
    scanner = ipaddress.ip_address(SCANNER).packed
    with open(path, "rb") as fi, open(out, "wb") as fo:
        reader = dpkt.pcap.Reader(fi)
        writer = dpkt.pcap.Writer(fo, linktype=reader.datalink(), nano=False)
        for ts, buf in reader:
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and scanner in (ip.src, ip.dst):
                continue
            writer.writepkt(buf, ts)
    return str(out)


@functools.lru_cache
def flows_of(path: str, topology: str | None = PARK) -> tuple[dict[str, Any], ...]:
    topo = load_topology(topology) if topology else None
    return tuple(f.to_dict() for f in run_capture(path, topo).flows)


def labels_for(flows: tuple[dict[str, Any], ...], labels_file: Path) -> list[int]:
    """1 for a flow inside an attack window that involves a listed attacker (or, when the
    attack lists none, a listed target) — ``shared/LABELS.md``."""
    doc = yaml.safe_load(labels_file.read_text())
    attacks = []
    for a in doc.get("attacks") or []:
        nets = [ipaddress.ip_network(n, strict=False) for n in a.get("attackers") or []]
        nets = nets or [ipaddress.ip_network(n, strict=False) for n in a.get("targets") or []]
        attacks.append((parse_ts(str(a["start"])), parse_ts(str(a["end"])), nets))
    out = []
    for f in flows:
        start, end = parse_ts(f["start"]), parse_ts(f["end"])
        ips = [ipaddress.ip_address(f["src_ip"]), ipaddress.ip_address(f["dst_ip"])]
        hit = any(
            start <= a_end and end >= a_start and any(ip in n for ip in ips for n in nets)
            for a_start, a_end, nets in attacks
        )
        out.append(int(hit))
    return out


def benign_training(seed: int = 7) -> tuple[dict[str, Any], ...]:
    return flows_of(corpus(seed, benign=True))


def trained(**kw: Any) -> FlowModel:
    m = FlowModel(**kw)
    for x in benign_training():
        m.learn(x)
    return m.fit()


def test_features_documented_finite_and_order_free() -> None:
    assert len(FEATURES) == N_FEATURES == len(set(FEATURE_NAMES))
    assert all(meaning for _, meaning in FEATURES)
    flows = flows_of(str(REPLAY / "sample_park.pcap"))
    rows = [flow_features(x) for x in flows]
    assert all(len(r) == N_FEATURES and all(math.isfinite(v) for v in r) for r in rows)
    rej = next(x for x in flows if x["conn_state"] == "REJ")
    v = dict(zip(FEATURE_NAMES, flow_features(rej), strict=True))
    assert v["state_rej"] == 1.0 and v["state_sf"] == 0.0 and v["proto_tcp"] == 1.0
    assert v["orig_payload_ratio"] == 0.0 and v["orig_pkts_log"] == pytest.approx(math.log(2))
    # same vector after a JSON round trip and in reversed order: nothing depends on context
    again = [flow_features(FlowRecord.from_json(FlowRecord.from_dict(x).to_json()).to_dict())
             for x in reversed(flows)]  # fmt: skip
    assert again[::-1] == rows


def test_separates_syn_scan_flows_from_sessions() -> None:
    m = trained()
    test = flows_of(corpus(8))
    y = np.array([x["src_ip"] == SCANNER for x in test])
    assert 50 < y.sum() < len(y) - 200
    s = np.array([a.score for a in m.assess_many(test)])
    assert [m.score(x) for x in test[:20]] == list(s[:20])  # one at a time == batched
    assert ((s >= 0) & (s <= 1)).all()
    assert roc_auc_score(y, s) > 0.9
    assert np.median(s[y]) > np.quantile(s[~y], 0.9)
    policy = m.default_policy()  # contamination 'auto': the paper's 0.5
    assert policy.threshold == 0.5


def test_contamination_sets_a_quantile_policy() -> None:
    m = trained(contamination=0.05)
    policy = m.default_policy()
    assert isinstance(policy, QuantileThreshold) and policy.q == pytest.approx(0.95)
    train_scores = m.training_scores()
    policy.fit(train_scores)
    rate = np.mean([policy.is_alert(s) for s in train_scores])
    assert 0.02 <= rate <= 0.06
    test = flows_of(corpus(8))
    scan = [x for x in test if x["src_ip"] == SCANNER]
    benign = [x for x in test if x["src_ip"] != SCANNER]
    assert np.mean([policy.is_alert(a.score) for a in m.assess_many(scan)]) > 0.9
    assert np.mean([policy.is_alert(a.score) for a in m.assess_many(benign)]) < 0.12


def test_explain_names_the_deviating_features() -> None:
    m = trained()
    test = flows_of(corpus(8))
    s0 = next(x for x in test if x["src_ip"] == SCANNER and x["conn_state"] == "S0")
    a = m.assess(s0)
    assert "state_s0" in a.evidence["features"]
    assert "state_s0=1" in a.reason and "most deviating features" in a.reason
    assert a.reason == m.explain(s0) and a.score == m.score(s0)
    devs = a.evidence["deviations"]
    assert len(devs) == 3 and abs(devs[0]["z"]) >= abs(devs[-1]["z"]) > 0
    assert a.evidence["conn_state"] == "S0"


def test_zone_models_with_global_fallback() -> None:
    m = trained(min_zone_flows=32)
    zones = m.summary()["zones"]
    assert zones["*"] == len(benign_training())
    assert "park-services" in zones and "external" in zones  # DNS server zone, Internet
    assert all(n >= 32 for k, n in zones.items())
    dns = next(x for x in benign_training() if x["dst_zone"] == "park-services")
    assert m.assess(dns).evidence["model"] == "park-services"
    odd = {**dns, "dst_zone": "nowhere"}
    assert m.assess(odd).evidence["model"] == "*"


def test_bad_settings_and_empty_model() -> None:
    with pytest.raises(ConfigError, match="contamination"):
        FlowModel(contamination=0.9)
    with pytest.raises(ConfigError, match="contamination"):
        FlowModel(contamination="lots")
    with pytest.raises(ConfigError, match="no flows"):
        FlowModel().score(benign_training()[0])


def test_learn_for_on_a_capture_with_benign_lead_in() -> None:
    """sample_park.pcap: 55 s of DNS, web and Modbus polling, then a SYN scan and a write."""
    flows = flows_of(str(REPLAY / "sample_park.pcap"))
    y = labels_for(flows, REPLAY / "sample_park.labels.yaml")
    runner = LearnThenScore(FlowModel(min_zone_flows=4), parse_duration("55s"))
    scored = list(zip(runner.process_many(flows), y, strict=True))
    got = [(a.score, lab) for a, lab in scored if a is not None]
    assert runner.learned >= 8 and sum(lab for _, lab in got) == sum(y)  # every attack scored
    assert roc_auc_score([lab for _, lab in got], [s for s, _ in got]) > 0.5


def _train(args: list[str]) -> Any:
    return CliRunner().invoke(train_command, args, catch_exceptions=True)


def test_train_cli_writes_model_and_card_and_detection_loads_it() -> None:
    cap = corpus(7, benign=True)
    model = _TMP / "flows.model"
    res = _train(["--baseline", cap, "--out", str(model), "--topology", PARK,
                  "--vantage", "park-gw", "--contamination", "0.05"])  # fmt: skip
    assert res.exit_code == 0, res.output
    card = json.loads(card_path(model).read_text())
    assert card["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert card["training_captures"] == [
        {"path": cap, "sha256": hashlib.sha256(Path(cap).read_bytes()).hexdigest(),
         "bytes": Path(cap).stat().st_size}
    ]  # fmt: skip
    assert [f["name"] for f in card["features"]] == list(FEATURE_NAMES)
    assert card["flows"] == len(benign_training()) and card["contamination"] == 0.05
    first = min(parse_ts(x["start"]) for x in benign_training())
    assert parse_ts(card["training_window"]["first"]) == first
    assert set(card["versions"]) == {"python", "numpy", "scikit-learn", "parkwatch"}
    assert card["detectors"]["flow_model"]["policy"]["policy"] == "QuantileThreshold"

    loaded = load_model(model)
    test = flows_of(corpus(8))
    alerts = loaded.alerts_many(test)
    assert loaded.alerts(test[0]) == [a for a in alerts if a.flow_uids == (test[0]["uid"],)]
    scan = [x for x in test if x["src_ip"] == SCANNER]
    hits = [a for a in alerts if a.attackers == (SCANNER,)]
    assert len(hits) > 0.9 * len(scan)
    assert len(alerts) - len(hits) < 0.12 * (len(test) - len(scan))
    a = hits[0]
    assert isinstance(a, Alert) and a.detector == "flow_model" and a.flow_uids
    assert a.attackers == (SCANNER,) and a.score is not None and a.score > a.evidence["threshold"]
    assert "most deviating features" in a.reason and a.evidence["features"]
    assert Alert.from_dict(a.to_dict()) == a
    # same training, same bytes: the model file is reproducible
    again = _TMP / "again.model"
    res = _train(["--baseline", cap, "--out", str(again), "--topology", PARK,
                  "--vantage", "park-gw", "--contamination", "0.05"])  # fmt: skip
    assert res.exit_code == 0 and again.read_bytes() == model.read_bytes()


def test_load_refuses_altered_or_foreign_models() -> None:
    cap = corpus(7, benign=True)
    model = _TMP / "tamper.model"
    assert _train(["--baseline", cap, "--out", str(model)]).exit_code == 0
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="do not match their card") as err:
        load_model(model)
    assert "parkwatch train" in str(err.value)
    assert _train(["--baseline", cap, "--out", str(model)]).exit_code == 0
    card = json.loads(card_path(model).read_text())
    card["versions"]["scikit-learn"] = "0.1"
    card_path(model).write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"scikit-learn 0\.1"):
        load_model(model)
    card_path(model).unlink()
    with pytest.raises(ModelError, match="card missing"):
        load_model(model)


def test_train_cli_errors_are_parkwatch_errors(tmp_path: Path) -> None:
    res = _train(["--baseline", str(tmp_path / "nope.pcap"), "--out", str(tmp_path / "m")])
    assert isinstance(res.exception, CaptureError)
    res = _train(["--baseline", corpus(7), "--out", str(tmp_path / "m"),
                  "--contamination", "x"])  # fmt: skip
    assert isinstance(res.exception, ConfigError)
    empty = tmp_path / "empty.pcap"
    with open(empty, "wb") as fh:
        dpkt.pcap.Writer(fh)
    res = _train(["--baseline", str(empty), "--out", str(tmp_path / "m")])
    assert isinstance(res.exception, ConfigError) and "nothing to learn" in str(res.exception)
    assert not (tmp_path / "m").exists()


@pytest.mark.shared
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared")
def test_real_syn_scan_capture_scores_above_normal_sessions() -> None:
    """chrissanders synscan.pcapng (1,994 SYNs to scanme.nmap.org) against held-out sessions."""
    m = trained()
    scan_cap = SHARED / "chrissanders_packets" / "synscan.pcapng"
    scan = flows_of(str(scan_cap), None)
    y_scan = labels_for(scan, scan_cap.with_name("synscan.labels.yaml"))
    attack = [x for x, lab in zip(scan, y_scan, strict=True) if lab]
    assert len(attack) > 1900
    normal = [x for x in flows_of(corpus(8)) if x["src_ip"] != SCANNER]
    s = [a.score for a in m.assess_many(attack + normal)]
    y = [1] * len(attack) + [0] * len(normal)
    assert roc_auc_score(y, s) > 0.9

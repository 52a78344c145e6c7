"""`parkwatch rules check|export` over the shipped pack, sigma-cli's own check, the ECS pipeline."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from detectors.rules_cli import export_queries, rules_command
from detectors.sigma.ecs_pipeline import PATH, mappings, pipeline_yaml
from parkwatch import ecs

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"


def _docs() -> list[dict]:
    return [
        d
        for p in sorted(RULES.rglob("*.yml"))
        if "pipelines" not in p.parts
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]


def test_check_passes_on_shipped_pack() -> None:
    res = CliRunner().invoke(rules_command, ["check", str(RULES)])
    assert res.exit_code == 0, res.output


def test_check_reports_one_line_per_problem(tmp_path: Path) -> None:
    src = (RULES / "net" / "net_ot_from_outside.yml").read_text()
    (tmp_path / "a_rule_without_id.yml").write_text(src.replace("id:", "x_id:"))
    (tmp_path / "dup.yml").write_text(src.replace("tags:\n", "tags:\n  - attack.t0883\n"))
    (tmp_path / "bad_category.yml").write_text(
        re.sub(r"\nid: \S+", "\nid: 00000000-0000-4000-8000-00000000abcd", src).replace(
            "category: policy_violation", "category: mayhem"
        )
    )
    res = CliRunner().invoke(rules_command, ["check", str(tmp_path)])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert any("IdentifierExistenceIssue" in x for x in lines)
    assert any("DuplicateTagIssue" in x and "dup.yml" in x for x in lines)
    assert any("FilenameLengthIssue" in x and "dup.yml" in x for x in lines)
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    (fixed / "bad_category.yml").write_text((tmp_path / "bad_category.yml").read_text())
    res = CliRunner().invoke(rules_command, ["check", str(fixed)])
    assert res.exit_code == 1 and "parkwatch.category 'mayhem'" in res.output


def test_sigma_cli_check_passes() -> None:
    sigma = shutil.which("sigma") or str(Path(sys.executable).with_name("sigma"))
    if not Path(sigma).exists():
        pytest.skip("sigma-cli not installed")
    res = subprocess.run(
        [
            sigma,
            "check",
            "--fail-on-issues",
            "-x",
            "attacktag",
            "-x",
            "d3_fendtag",
            str(RULES / "net"),
            str(RULES / "it"),
            str(RULES / "ot"),
            str(RULES / "app"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "No validation issues found" in res.stdout


@pytest.mark.parametrize("target", ["lucene", "esql", "eql"])
def test_export_converts_every_rule(target: str) -> None:
    queries, skipped = export_queries(RULES, target)
    docs = _docs()
    base = [d for d in docs if "correlation" not in d]
    corr = [d for d in docs if "correlation" in d]
    unsupported = {
        "lucene": {"event_count", "value_count", "temporal", "temporal_ordered"},
        "esql": {"temporal_ordered"},
        "eql": set(),
    }[target]

    def negated_or_aliased(d: dict) -> bool:
        """Temporal correlations with a boolean condition (e.g. 'write and not read') or
        field aliases: ES|QL and EQL cannot express them."""
        c = d["correlation"]
        return c["type"] == "temporal" and (isinstance(c.get("condition"), str) or "aliases" in c)

    expect_skipped = [
        d
        for d in corr
        if d["correlation"]["type"] in unsupported
        or (target in ("esql", "eql") and negated_or_aliased(d))
    ]
    ids = [q[0] for q in queries]
    assert len(skipped) == len(expect_skipped)
    assert sorted(ids) == sorted(str(d["id"]) for d in base + corr if d not in expect_skipped)
    text = "\n".join(q[2] for q in queries)
    assert "conn_state" not in text and "zeek.connection.state" in text
    if target == "esql":
        assert "from parkwatch-flows" in text and "from parkwatch-events" in text


def test_export_command_prints_queries() -> None:
    res = CliRunner().invoke(rules_command, ["export", "--target", "esql", str(RULES)])
    assert (
        res.exit_code == 0 and "| stats value_count=count_distinct(destination.port)" in res.output
    )


def test_pipeline_file_is_generated_from_ecs_table() -> None:
    assert PATH.read_text() == pipeline_yaml(), "run: python -m detectors.sigma.ecs_pipeline"
    m = mappings()
    for field, name in ecs.FLOW.items():
        assert m["flow"][field] == name
    for field, name in ecs.EVENT.items():
        assert m["event"][field] == name
    assert m["event"]["src_zone_kind"] == ecs.ecs_name("parkwatch.ot_event", "src_zone_kind")
    for field, name in ecs.WEIRD.items():
        if field in m["weird"]:
            assert m["weird"][field] == name
    assert m["weird"]["src_ip"] == m["event"]["src_ip"] == "source.ip"
    used = {k.split("|")[0] for d in _docs() for k in _detection_fields(d)}
    assert used <= set(m["flow"]) | set(m["arp"]) | set(m["event"]) | set(m["weird"])


def _detection_fields(doc: dict) -> list[str]:
    out: list[str] = []
    for name, body in (doc.get("detection") or {}).items():
        if name != "condition" and isinstance(body, dict):
            out += list(body)
    return out


def test_broken_rule_yaml_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text("title: x\nlogsource: [product\n")
    from detectors.sigma.loader import RuleError, load_pack

    with pytest.raises(RuleError) as exc:
        load_pack(tmp_path)
    assert exc.value.file == str(bad) and exc.value.line == 3
    res = subprocess.run(
        [sys.executable, "-m", "parkwatch.cli", "rules", "check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "broken.yml:3" in res.stderr + res.stdout
    assert "Traceback" not in res.stderr

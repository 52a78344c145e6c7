"""``parkwatch rules check|export``: validate the Sigma pack, convert it for Elasticsearch.

``check [DIR]`` runs pySigma's standard validators (all of them except ``attacktag`` and
``d3_fendtag``, which need MITRE data downloads) plus ParkWatch's own load and compile step
(the conventions of ``rules/README.md``), printing one line per problem; exit 1 on any.

``export --target lucene|esql|eql [DIR]`` converts every rule with pySigma-backend-elasticsearch
through ``rules/pipelines/parkwatch_ecs.yml``. Base rules are converted on their own (also the
ones a correlation references). Correlations a backend cannot express are skipped with a note
on stderr: Lucene has no correlations at all; ES|QL has no ``temporal_ordered``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule

from detectors.sigma.ecs_pipeline import PATH as PIPELINE_PATH
from detectors.sigma.loader import RuleError, load_collection, load_pack, rule_files

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "rules"
EXCLUDED_VALIDATORS = ("attacktag", "d3_fendtag")


def _backends() -> dict[str, type]:
    from sigma.backends.elasticsearch import EqlBackend, ESQLBackend, LuceneBackend

    return {"lucene": LuceneBackend, "esql": ESQLBackend, "eql": EqlBackend}


def check_problems(root: Path) -> list[str]:
    """Every problem of the pack under ``root``, one line each (empty list: all good)."""
    from sigma.plugins import InstalledSigmaPlugins
    from sigma.validation import SigmaValidator

    problems: list[str] = []
    try:
        files = rule_files(root)
        coll = load_collection(files)
    except RuleError as exc:
        return [str(exc)]
    ok = []
    for rule in coll.rules:
        where = str(rule.source.path) if rule.source and rule.source.path else rule.title
        if rule.errors:
            problems += [f"{where}: {type(e).__name__}: {e}" for e in rule.errors]
            continue
        if isinstance(rule, SigmaRule):
            try:
                for cond in rule.detection.parsed_condition:
                    cond.parse()
            except SigmaError as exc:
                problems.append(f"{where}: condition error: {exc}")
                continue
        ok.append(rule)
    validators = InstalledSigmaPlugins.autodiscover().validators
    chosen = [v for name, v in validators.items() if name.lower() not in EXCLUDED_VALIDATORS]
    validator = SigmaValidator(chosen)  # type: ignore[arg-type]
    for issue in validator.validate_rules(iter(ok)):  # type: ignore[arg-type]
        names = ", ".join(str(r.source.path) if r.source else str(r.id) for r in issue.rules)
        problems.append(
            f"{names}: {type(issue).__name__} ({issue.severity.name.lower()}): {issue.description}"
        )
    if not problems:
        try:
            from detectors.sigma.engine import SigmaEngine

            SigmaEngine(load_pack(files))
        except RuleError as exc:
            problems.append(str(exc))
    return problems


def export_queries(root: Path, target: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``([(rule id, title, query)], [skip notes])`` for every rule under ``root``."""
    pipeline = ProcessingPipeline.from_yaml(PIPELINE_PATH.read_text(encoding="utf-8"))
    backend_cls = _backends()[target]
    out: list[tuple[str, str, str]] = []
    skipped: list[str] = []
    docs = [
        (path, d)
        for path in rule_files(root)
        for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if isinstance(d, dict)
    ]
    base = [d for _, d in docs if "correlation" not in d]
    # base rules alone, so a correlation's generate: false does not hide them
    for rule in SigmaCollection.from_dicts(base, collect_errors=True).rules:
        backend = backend_cls(pipeline)
        backend.init_processing_pipeline()
        out += [(str(rule.id), rule.title, str(q)) for q in backend.convert_rule(rule)]
    for path, doc in docs:
        if "correlation" not in doc:
            continue
        refs = set(doc["correlation"].get("rules") or [])
        used = [d for d in base if d.get("name") in refs or str(d.get("id")) in refs]
        coll = SigmaCollection.from_dicts([*used, doc])
        try:
            queries = backend_cls(pipeline).convert(coll)
        except NotImplementedError as exc:
            skipped.append(f"{path}: {doc.get('title')}: skipped for {target}: {exc}")
            continue
        out += [(str(doc.get("id")), str(doc.get("title")), str(q)) for q in queries]
    return out, skipped


@click.group("rules")
def rules_command() -> None:
    """Check and export the Sigma rule pack."""


@rules_command.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def check_command(directory: Path | None) -> None:
    """Validate every rule under DIRECTORY (default: the shipped rules/)."""
    problems = check_problems(directory or DEFAULT_DIR)
    for line in problems:
        click.echo(line)
    if problems:
        raise SystemExit(1)
    click.echo(f"ok: {len(load_pack(directory or DEFAULT_DIR))} rules", err=True)


@rules_command.command("export")
@click.option("--target", type=click.Choice(["lucene", "esql", "eql"]), required=True)
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def export_command(target: str, directory: Path | None) -> None:
    """Convert every rule under DIRECTORY to TARGET queries (one block per rule)."""
    try:
        queries, skipped = export_queries(directory or DEFAULT_DIR, target)
    except (SigmaError, RuleError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    for rid, title, query in queries:
        click.echo(f"// {rid} {title}\n{query}\n")
    for note in skipped:
        sys.stderr.write(note + "\n")

"""``parkwatch report``: the park security indicator report (triage: ``parkwatch incidents``).

The indicator report reads the store: indicator 10 — the defended-attack ratio (defended /
(defended + succeeded), unknown verdicts beside it) park-wide and per enterprise, category and
day; indicator 13 — response speed: time from an incident's first alert to its
acknowledgement and to its resolution (count, median, mean, 90th percentile; open incidents
counted apart).
"""

from __future__ import annotations

from typing import Any

import click
import orjson

from parkwatch.durations import parse_time_option
from parkwatch.indicators import indicators
from parkwatch.store.sqlite import SqliteStore


def _text(rep: dict[str, Any], since: str | None, until: str | None) -> str:
    d = rep["indicator_10_defended_ratio"]
    p = d["park"]
    r = rep["indicator_13_response_speed"]
    lines = [
        f"ParkWatch park security indicators, {since or 'beginning'} .. {until or 'now'}",
        f"incidents: {rep['incidents']}",
        f"[10] defended-attack ratio: {p['ratio']} ({p['defended']} defended, "
        f"{p['succeeded']} succeeded, {p['unknown']} unknown)",
    ]
    for group in ("enterprise", "category", "period"):
        for key, c in d[group].items():
            known = c["defended"] + c["succeeded"]
            lines.append(
                f"     {group} {key}: {c['ratio']} ({c['defended']}/{known}, "
                f"{c['unknown']} unknown)"
            )
    for name in ("to_acknowledge", "to_resolve"):
        s = r[name]
        lines.append(
            f"[13] time {name.replace('_', ' ')}: {s['count']} incidents, median {s['median_s']} s,"
            f" mean {s['mean_s']} s, p90 {s['p90_s']} s"
        )
    lines.append(f"     never acknowledged: {r['never_acknowledged']}, still open: {r['open']}")
    return "\n".join(lines)


@click.command("report")
@click.option(
    "--store",
    "store_path",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="SQLite store (parkwatch replay writes OUT/parkwatch.db).",
)
@click.option("--since", default=None, help="RFC 3339 start of the period.")
@click.option("--until", default=None, help="RFC 3339 end of the period.")
@click.option("--enterprise", default=None, help="Only this enterprise's incidents.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def report_command(
    store_path: str, since: str | None, until: str | None, enterprise: str | None, fmt: str
) -> None:
    """Render the park security indicator report (indicators 10 and 13) from the store."""
    lo, hi = parse_time_option(since, "--since"), parse_time_option(until, "--until")
    with SqliteStore.open(store_path) as st:
        incs = st.incidents(lo, hi, enterprise)
    rep = indicators(incs)
    if fmt == "json":
        click.echo(orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(_text(rep, since, until))

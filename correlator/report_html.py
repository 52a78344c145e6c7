"""``report.html``: the replay's scorecard for a person — timeline, recall, defended ratio.

One self-contained file: plots are drawn with matplotlib (Agg backend, no display needed) and
embedded as base64 PNG; tables are plain HTML; every value is escaped.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from parkwatch.schema import CATEGORIES, Incident, format_ts


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _plots(incidents: list[Incident], card: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    fig, ax = plt.subplots(figsize=(9, 3.2))
    cats = [c for c in CATEGORIES if any(i.category == c for i in incidents)]
    colors = {True: "tab:green", False: "tab:red", None: "tab:gray"}
    origin = min((i.first_seen for i in incidents), default=0)
    span = max((i.last_seen - origin for i in incidents), default=0) / 1e9
    for i in incidents:
        y = cats.index(i.category)
        t0 = (i.first_seen - origin) / 1e9
        t1 = max((i.last_seen - origin) / 1e9, t0 + max(span / 200, 0.01))
        ax.plot([t0, t1], [y, y], lw=6, color=colors[i.defended])
    ax.set_yticks(range(len(cats)), cats)
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    ax.set_xlabel(
        f"seconds after {format_ts(origin)} (green defended, red succeeded, grey unknown)"
    )
    ax.set_title("Incident timeline")
    out.append(("Incident timeline", _png(fig)))
    plt.close(fig)
    per = card["total"]["per_category"]
    if per:
        fig, ax = plt.subplots(figsize=(9, 3.2))
        names = list(per)
        ax.bar(names, [per[n]["category_recall"] or 0 for n in names], color="tab:blue")
        ax.set_ylim(0, 1)
        ax.set_ylabel("category recall")
        ax.tick_params(axis="x", rotation=30)
        ax.set_title("Per-category attack recall")
        out.append(("Per-category recall", _png(fig)))
        plt.close(fig)
    return out


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(card: dict[str, Any], incidents: list[Incident], campaigns: list[dict[str, Any]]) -> str:
    t = card["total"]
    dr = card["defended_ratio"]["park"]
    summary = _table(
        ["metric", "value"],
        [
            ["labelled captures", card["labelled_captures"]],
            ["attacks", t["attacks"]],
            ["attack recall", t["attack_recall"]],
            ["category recall", t["category_recall"]],
            ["incident precision", t["incident_precision"]],
            ["false incidents / hour", t["false_incidents_per_hour"]],
            ["median time to detect (s)", t["time_to_detect_s"]["median"]],
            ["defended-ratio check", t["defended_ratio_check"]["ratio"]],
            [
                "defended ratio (indicator 10)",
                f"{dr['ratio']} ({dr['defended']} defended, {dr['succeeded']} succeeded, "
                f"{dr['unknown']} unknown)",
            ],
        ],
    )
    per_cat = _table(
        ["category", "attacks", "recall", "category recall"],
        [
            [c, v["attacks"], v["recall"], v["category_recall"]]
            for c, v in t["per_category"].items()
        ],
    )
    top = sorted(
        incidents,
        key=lambda i: (
            -["informational", "low", "medium", "high", "critical"].index(i.severity)
            if i.severity in ("informational", "low", "medium", "high", "critical")
            else 0,
            i.first_seen,
        ),
    )[:25]
    top_rows = [
        [
            format_ts(i.first_seen),
            i.severity,
            i.category,
            ", ".join(i.attackers[:3]),
            ", ".join(i.targets[:3]) + (" …" if len(i.targets) > 3 else ""),
            i.alert_count,
            {True: "defended", False: "succeeded", None: "unknown"}[i.defended],
            i.title,
        ]
        for i in top
    ]
    tops = _table(
        [
            "first seen",
            "severity",
            "category",
            "attackers",
            "targets",
            "alerts",
            "verdict",
            "title",
        ],
        top_rows,
    )
    camp = _table(
        ["campaign", "attacker", "enterprises", "recommendation"],
        [
            [c["id"], c["attacker"], ", ".join(c["enterprises"]), c["recommendation"]]
            for c in campaigns
        ],
    )
    caps = _table(
        ["capture", "packets", "alerts", "incidents", "attack recall", "precision"],
        [
            [
                name,
                c["packets"],
                c["alerts"],
                c["incidents"],
                c.get("score", {}).get("attack_recall"),
                c.get("score", {}).get("incident_precision"),
            ]
            for name, c in card["captures"].items()
        ],
    )
    imgs = "".join(
        f'<h2>{html.escape(title)}</h2><img alt="{html.escape(title)}" src="{src}">'
        for title, src in _plots(incidents, card)
    )
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>ParkWatch replay report</title>"
        f"<style>{style}</style></head><body><h1>ParkWatch replay report</h1>"
        f"<p>ParkWatch {html.escape(card['tool_version'])}</p><h2>Summary</h2>{summary}"
        f"{imgs}<h2>Per category</h2>{per_cat}<h2>Top incidents</h2>{tops}"
        f"<h2>Campaigns</h2>{camp}<h2>Captures</h2>{caps}</body></html>"
    )

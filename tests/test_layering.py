"""Stages depend on ``parkwatch`` only, never on each other (and ``parkwatch`` on no stage).

Composition goes through :mod:`parkwatch.stages` (entry points), so this is checked on the
source: every ``import`` of every module, including imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("collectors", "detectors", "correlator")


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("package", [*STAGES, "parkwatch"])
def test_no_stage_imports_another(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, mod in imports(path):
            top = mod.split(".")[0]
            if top in STAGES and top != package:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)

"""The wheel carries everything the installed commands read at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = (".git", ".venv", "build", "*.egg-info", "out", "__pycache__", ".*_cache", "node_modules")


@pytest.mark.slow
def test_wheel_holds_rules_templates_and_scenario_captures(tmp_path):
    """`detect`/`replay` load ``rules/`` beside the ``detectors`` package, the console its
    templates and CSS, `replay` its generated captures: an installed wheel must hold them."""
    src = tmp_path / "src"  # a clean copy: no stale build/ directory can fill the wheel
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*SKIP))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("parkwatch-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [p for p in (ROOT / "rules").rglob("*.yml")]
    wanted += [
        p for p in (ROOT / "parkwatch" / "console").rglob("*") if p.suffix in (".html", ".css")
    ]
    wanted += list((ROOT / "replay_pcaps").glob("*.pcap"))
    assert len(wanted) > 100
    missing = [str(p.relative_to(ROOT)) for p in wanted if str(p.relative_to(ROOT)) not in names]
    assert not missing
    assert "detectors/stage.py" in names and "rules/README.md" in names

"""Stage registry: how one stage (or the replay) reaches another without importing it.

Stages depend on ``parkwatch`` only. Each stage publishes its entry object under the
``parkwatch.stages`` entry-point group (``pyproject.toml``) and whoever composes stages — the
auditor replay, ``parkwatch train`` — loads it by name here:

- ``collect``: the capture pipeline class, ``Collector(settings, topology, vantage=None,
  apps=None)`` with ``run(captures, emit, flows, progress=None) -> stats``;
- ``decoders``: a function returning the names of the registered protocol decoders;
- ``check_capture``: a function raising :class:`~parkwatch.errors.CaptureError` for a file
  that is not a readable capture;
- ``detect``: the detection stage class, ``Detection(topology, rules=None, model=None,
  learn_for_ns=None)`` with ``process(record) -> alerts`` and ``flush() -> alerts``;
- ``rules``: the directory of the shipped rule pack;
- ``correlate``: the correlator class, ``Correlator(topology, window_ns=…,
  suppressions=None, source=None)`` with ``observe``, ``add``, ``incidents``, ``campaigns``.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from parkwatch.errors import ConfigError


@cache
def load_stage(name: str) -> Any:
    """The object the stage registered as ``name`` (imported on first use)."""
    for ep in entry_points(group="parkwatch.stages"):
        if ep.name == name:
            return ep.load()
    raise ConfigError(
        f"no stage {name!r} is installed",
        hint="install ParkWatch with 'pip install -e .' so its stages are registered",
    )

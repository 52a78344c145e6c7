"""In-stream Sigma: rules parsed by pySigma, compiled to Python predicates, run per record.

``SigmaEngine(load_pack(dir), topology).process(kind, record.to_dict())`` -> alerts. The rule
taxonomy (log-source categories, fields, the ``parkwatch`` rule attribute) is in
``rules/README.md``.
"""

from detectors.sigma.engine import EngineError, SigmaEngine, event_time
from detectors.sigma.loader import KINDS, RuleError, RuleMeta, RulePack, load_pack

__all__ = [
    "KINDS",
    "EngineError",
    "RuleError",
    "RuleMeta",
    "RulePack",
    "SigmaEngine",
    "event_time",
    "load_pack",
]

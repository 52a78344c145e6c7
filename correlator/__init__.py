"""Correlator: alerts -> incidents and campaigns, defended verdicts, scoring and replay."""

"""Collectors: turn packets into flow records and protocol events (facts, never judgements)."""

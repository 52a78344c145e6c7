"""Scenario captures the project generates itself (deterministic scapy generators)."""
